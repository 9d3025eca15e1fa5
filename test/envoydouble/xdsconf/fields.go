// Package xdsconf turns the xDS resources mcpgate emits (Listener, RouteConfiguration, Cluster,
// ClusterLoadAssignment and the bootstrap) into an immutable model that the envoydouble data plane
// serves. It refuses, with an error naming the resource and the field, everything it does not
// reproduce faithfully: a NACK is better than a guess.
package xdsconf

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// checkFields refuses every populated field of m whose name is not in allowed. It is the double's
// general "refuse loudly" rule: a field that would change Envoy's behaviour and that the double does
// not implement is a NACK naming the field, never a silent difference.
func checkFields(m proto.Message, path string, allowed ...string) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	var bad []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	for i, b := range bad {
		bad[i] = join(path, b)
	}
	return fmt.Errorf("%s: not implemented by envoydouble (the double refuses what it cannot reproduce)", strings.Join(bad, ", "))
}

// join builds a field path such as "virtual_hosts[0].routes[2].match".
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// idx builds "field[i]".
func idx(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// unpack decodes an Any into dst, naming the field and the expected type on failure.
func unpack(a *anypb.Any, dst proto.Message, path string) error {
	if a == nil {
		return fmt.Errorf("%s: missing", path)
	}
	want := "type.googleapis.com/" + string(dst.ProtoReflect().Descriptor().FullName())
	if a.GetTypeUrl() != want {
		return fmt.Errorf("%s: type %s not implemented by envoydouble (want %s)", path, a.GetTypeUrl(), want)
	}
	if err := a.UnmarshalTo(dst); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// validate runs the protoc-gen-validate rules that Envoy applies to every resource it accepts.
func validate(m interface{ ValidateAll() error }, path string) error {
	if err := m.ValidateAll(); err != nil {
		return fmt.Errorf("%s: invalid: %w", path, err)
	}
	return nil
}
