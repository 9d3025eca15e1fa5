package file

import (
	"path/filepath"
	"strings"
	"testing"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestConfigMapsAndFrontendTLS: a Gateway's client certificate validation
// (spec.tls.frontend) and the ConfigMaps holding its CA certificates load from files (data and
// binaryData, the namespace defaulted as kubectl does); a ConfigMap with an unknown field is
// refused naming the file, the document, the object and the field, as other kinds are, and so is
// a misspelt field of spec.tls.frontend.
func TestConfigMapsAndFrontendTLS(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "mtls.yaml")
	write(t, f, `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: mcpgate
  tls:
    frontend:
      default:
        validation:
          mode: AllowInsecureFallback
          caCertificateRefs: [{group: "", kind: ConfigMap, name: client-ca}]
      perPort:
      - port: 8443
        tls: {}
  listeners: [{name: https, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: client-ca}
data:
  ca.crt: PEM
---
apiVersion: v1
kind: ConfigMap
metadata: {name: binary-ca, namespace: pki}
binaryData:
  ca.crt: UEVN
---
apiVersion: v1
kind: ConfigMap
metadata: {name: typo}
datta: {ca.crt: PEM}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: typo}
spec:
  gatewayClassName: mcpgate
  tls: {frontend: {default: {validation: {caCertificateRef: []}}}}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
`)
	res, _, err := Load(f)
	for _, want := range []string{
		f + ": document 4: ConfigMap default/typo: datta: unknown field",
		f + ": document 5: Gateway default/typo: spec.tls.frontend.default.validation.caCertificateRef: unknown field",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v, want an error with %q", err, want)
		}
	}
	if len(res.ConfigMaps) != 2 {
		t.Fatalf("%d ConfigMaps loaded, want client-ca and pki/binary-ca", len(res.ConfigMaps))
	}
	if c := res.ConfigMaps[0]; c.Namespace != "default" || c.Name != "client-ca" || c.Data["ca.crt"] != "PEM" {
		t.Errorf("ConfigMap %s/%s data %v, want default/client-ca with ca.crt PEM", c.Namespace, c.Name, c.Data)
	}
	if c := res.ConfigMaps[1]; c.Namespace != "pki" || string(c.BinaryData["ca.crt"]) != "PEM" {
		t.Errorf("ConfigMap %s/%s binaryData %q, want pki/binary-ca with ca.crt PEM", c.Namespace, c.Name, c.BinaryData)
	}
	if len(res.Gateways) != 1 || res.Gateways[0].Spec.TLS == nil || res.Gateways[0].Spec.TLS.Frontend == nil {
		t.Fatalf("the Gateway's spec.tls.frontend did not load: %+v", res.Gateways)
	}
	fe := res.Gateways[0].Spec.TLS.Frontend
	if v := fe.Default.Validation; v == nil || v.Mode != gwv1.AllowInsecureFallback || len(v.CACertificateRefs) != 1 ||
		v.CACertificateRefs[0].Kind != "ConfigMap" || v.CACertificateRefs[0].Name != "client-ca" {
		t.Errorf("default validation %+v", fe.Default.Validation)
	}
	if len(fe.PerPort) != 1 || fe.PerPort[0].Port != 8443 || fe.PerPort[0].TLS.Validation != nil {
		t.Errorf("perPort %+v, want port 8443 without validation", fe.PerPort)
	}
}
