package xds

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// anyName is the full name of google.protobuf.Any, the wrapper of Envoy's typed configs.
const anyName protoreflect.FullName = "google.protobuf.Any"

// checker validates resources. It remembers which fields of each message type can hold an Any,
// so that it walks only the parts of a resource where one can be: a RouteConfiguration's matches,
// for one, cannot hold any.
type checker struct {
	// holds is message type -> whether it is an Any or can hold one (holdsAny's memo).
	holds map[protoreflect.FullName]bool
	// fields is message type -> its fields that can hold an Any (anyFields' memo).
	fields map[protoreflect.FullName][]protoreflect.FieldDescriptor
}

// validate checks m against the rules of its proto (go-control-plane's ValidateAll), and so
// every typed config (Any) inside it, which ValidateAll does not open: Envoy checks both on
// receipt and rejects the whole response when one fails. A typed config of a type this process
// does not know is not checked (the translator imports every type it emits).
func (c *checker) validate(m proto.Message) error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, c.validateAnys(nil, m.ProtoReflect())...)...)
}

// validateAnys appends to errs what is wrong inside the Anys of m. Each error names the fields
// that lead to its Any, from m; the names are made only for errors.
func (c *checker) validateAnys(errs []error, m protoreflect.Message) []error {
	for _, fd := range c.anyFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = c.validateField(errs, fd, mv.Message(), -1, k)
				return true
			})
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				errs = c.validateField(errs, fd, l.Get(i).Message(), i, protoreflect.MapKey{})
			}
		default:
			errs = c.validateField(errs, fd, v.Message(), -1, protoreflect.MapKey{})
		}
	}
	return errs
}

// validateField appends to errs what is wrong inside v, the value of field fd at index (a
// list's, -1 otherwise) or key (a map's), each error named with the field.
func (c *checker) validateField(errs []error, fd protoreflect.FieldDescriptor, v protoreflect.Message, index int, key protoreflect.MapKey) []error {
	var found []error
	if v.Descriptor().FullName() == anyName {
		if err := c.validateAny(v); err != nil {
			found = []error{err}
		}
	} else {
		found = c.validateAnys(nil, v)
	}
	for _, err := range found {
		at := string(fd.Name())
		switch {
		case fd.IsMap():
			at += "[" + key.String() + "]"
		case index >= 0:
			at += fmt.Sprintf("[%d]", index)
		}
		errs = append(errs, fmt.Errorf("%s: %w", at, err))
	}
	return errs
}

// validateAny validates the message an Any holds, when its type is known.
func (c *checker) validateAny(v protoreflect.Message) error {
	a, ok := v.Interface().(*anypb.Any)
	if !ok {
		return nil
	}
	inner, err := a.UnmarshalNew()
	switch {
	case errors.Is(err, protoregistry.NotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	if err := c.validate(inner); err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// anyFields returns the fields of md whose values (a map's values, a list's items) are Anys or
// can hold one.
func (c *checker) anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if fs, ok := c.fields[md.FullName()]; ok {
		return fs
	}
	var fs []protoreflect.FieldDescriptor
	all := md.Fields()
	for i := range all.Len() {
		if sub := valueMessage(all.Get(i)); sub != nil && c.holdsAny(sub) {
			fs = append(fs, all.Get(i))
		}
	}
	if c.fields == nil {
		c.fields = map[protoreflect.FullName][]protoreflect.FieldDescriptor{}
	}
	c.fields[md.FullName()] = fs
	return fs
}

// holdsAny tells whether a message of type md is an Any or can hold one, at any depth.
func (c *checker) holdsAny(md protoreflect.MessageDescriptor) bool {
	if h, ok := c.holds[md.FullName()]; ok {
		return h
	}
	seen := map[protoreflect.FullName]bool{}
	var reaches func(d protoreflect.MessageDescriptor) bool
	reaches = func(d protoreflect.MessageDescriptor) bool {
		if d.FullName() == anyName {
			return true
		}
		if seen[d.FullName()] {
			return false
		}
		seen[d.FullName()] = true
		fields := d.Fields()
		for i := range fields.Len() {
			if sub := valueMessage(fields.Get(i)); sub != nil && reaches(sub) {
				return true
			}
		}
		return false
	}
	if c.holds == nil {
		c.holds = map[protoreflect.FullName]bool{}
	}
	h := reaches(md)
	c.holds[md.FullName()] = h
	return h
}

// valueMessage is the message type of fd's values (a map's values), nil for scalars.
func valueMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return fd.MapValue().Message()
	}
	return fd.Message()
}
