# Kubernetes: the kube-apiserver and etcd that the tests run against (envtest), built from Go
# modules into the cache folder once per machine (see hack/kube-assets/build.sh).
KUBE_ASSETS := $(CACHE)/kube
export KUBEBUILDER_ASSETS := $(KUBE_ASSETS)

.PHONY: kube-assets
kube-assets: ## build kube-apiserver and etcd for the Kubernetes tests into $(CACHE)/kube (once; ~6 min cold)
	@hack/kube-assets/build.sh
	@command -v kubectl >/dev/null || { \
	  echo "kube-assets: kubectl missing, installing the Debian package"; \
	  $(APT_GET) install -y -qq kubectl >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq kubectl >/dev/null; }; }

TEST_DEPS += kube-assets
