// Package authz evaluates a policy's CEL authorization rules against a request.
//
// One environment (Env) serves both the translator, which checks expressions when it builds a
// policy, and ext_proc, which compiles a policy's rules once per policy version (RuleSet) and
// evaluates them per request. The variables are:
//
//	jwt      map(string, dyn)   the verified token's claims (jwt.org, jwt.llms.openai...)
//	request  .method .path .host string (path without query; host as Envoy matches virtual
//	         hosts: lower case, without port and trailing dot), .headers map(string, string)
//	         (lower-case names)
//	mcp      .method string (JSON-RPC method), .tool.name, .tool.target string,
//	         .tool.arguments map(string, dyn), .prompt.name, .prompt.target string,
//	         .resource.name (the URI), .resource.target string
//	source   .address string (the client IP)
//
// plus cel-go's string extensions (ext.Strings) and network functions (ext.Network: ip(), cidr(),
// cidr(...).containsIP(source.address)). Misspelt fields of request, mcp and source are compile
// errors; claims are not known in advance, so a missing claim (jwt.org without a token, or
// without that claim) is an error at run time, which fails closed (see Evaluate: a DENY rule
// that fails denies, a REQUIRE or ALLOW rule that fails does not hold).
//
// Evaluation follows agentgateway: any DENY that matches denies; else any REQUIRE that does not
// match denies; else any ALLOW that matches allows; else the request is allowed only when there
// are no ALLOW rules.
//
// A request concerns at most one MCP item (mcp.ItemOf, or Input.Item): a tool (tools/call), a
// prompt (prompts/get) or a resource (resources/read, resources/subscribe, resources/unsubscribe;
// a completion/complete concerns the prompt or resource its ref names); so does each item of a
// list answer being filtered. Of mcp.tool, mcp.prompt and mcp.resource only that item's is
// there (has() tells); a rule whose outcome depends on reading another does not apply to the
// request: it neither denies (DENY), nor is unmet (REQUIRE), nor allows (ALLOW). So a DENY rule
// on a tool leaves prompts alone, and ALLOW rules that name only tools allow no prompt. A request
// that concerns no item (initialize, tools/list, a GET stream: only traffic rules see those)
// reads every item's fields empty.
//
// A tools/list answer shows the tools some call of which the rules could allow
// (RuleSet.EvaluateListing): the calls' arguments are not known then, so rules that read
// mcp.tool.arguments are evaluated with them unknown (CEL partial evaluation).
package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// Defaults of Options.
const (
	// DefaultCostLimit bounds one rule's evaluation, in CEL cost units (about one per operation;
	// string and list operations cost by size). Rules of a policy are simple comparisons costing
	// tens of units; the limit stops a rule that walks large tool arguments.
	DefaultCostLimit = 100_000
	// DefaultInterruptCheckFrequency is how many comprehension iterations run between checks of
	// the request's context.
	DefaultInterruptCheckFrequency = 100
	// DefaultMaxHeaderBytes bounds what comes from request headers (claims, request.*, source)
	// for the static cost estimate: Envoy refuses larger headers (max_request_headers_kb 60).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxBodyBytes bounds what comes from the body (mcp.*) for the static cost estimate:
	// the MCP body limit (4 MiB by default).
	DefaultMaxBodyBytes = 4 << 20
)

// Options tune an Env. The zero value gives the defaults.
type Options struct {
	// CostLimit bounds the cost of one rule's evaluation; exceeding it is a run-time error.
	CostLimit uint64
	// InterruptCheckFrequency is the number of comprehension iterations between context checks.
	InterruptCheckFrequency uint
	// MaxHeaderBytes and MaxBodyBytes bound the sizes of the inputs for the static cost estimate
	// (see RuleSet).
	MaxHeaderBytes, MaxBodyBytes uint64
}

// Env is the CEL environment of authorization rules. It is safe for concurrent use; make one per
// process.
type Env struct {
	env  *cel.Env
	opts Options
}

// NewEnv builds the environment.
func NewEnv(opts Options) (*Env, error) {
	if opts.CostLimit == 0 {
		opts.CostLimit = DefaultCostLimit
	}
	if opts.InterruptCheckFrequency == 0 {
		opts.InterruptCheckFrequency = DefaultInterruptCheckFrequency
	}
	if opts.MaxHeaderBytes == 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	env, err := cel.NewEnv(
		// The libraries register their types in the base registry, so they come before the
		// schema that wraps it.
		ext.Strings(),
		ext.Network(),
		withSchema(),
		cel.Variable("jwt", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.ObjectType(requestTypeName)),
		cel.Variable("mcp", cel.ObjectType(mcpTypeName)),
		cel.Variable("source", cel.ObjectType(sourceTypeName)),
	)
	if err != nil {
		return nil, fmt.Errorf("authz: CEL environment: %w", err)
	}
	return &Env{env: env, opts: opts}, nil
}

// Check parses and type-checks one expression; it must give a bool (or dyn, checked at run time).
// The error is CEL's message, with line, column and a caret under the fault.
func (e *Env) Check(expr string) error {
	_, err := e.check(expr)
	return err
}

// check compiles expr to a checked AST.
func (e *Env) check(expr string) (*cel.Ast, error) {
	checked, iss := e.env.Compile(expr)
	if err := iss.Err(); err != nil {
		return nil, err
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("expression gives %s, want bool", t)
	}
	return checked, nil
}

// RuleSet is a policy's rules compiled for evaluation. It is immutable and safe for concurrent
// use. A nil RuleSet has no rules and allows everything.
//
// Cost: Compile estimates each rule's worst-case cost with the inputs at their largest
// (Options.MaxHeaderBytes, MaxBodyBytes). A rule whose estimate is within the cost limit cannot
// exceed it, so it runs without run-time cost tracking, which would cost five allocations per
// evaluation; the others (comprehensions over inputs, chains of string operations that grow
// their input) run with the cost limit and are interrupted when the request's context ends.
//
// A rule that reads mcp.tool.arguments has a second program, for EvaluateListing, compiled with
// partial evaluation under the same cost settings; the other rules serve both with one program.
type RuleSet struct {
	deny, require, allow []rule
	needsMCP, readsArgs  bool
	claims               []string
	// args are the argument members the rules select by name; nil when they select none.
	args *argNames
	// noAllow is Decision.Rule when ALLOW rules exist and none matched (see allowPolicies).
	noAllow string
}

// rule is one compiled expression.
type rule struct {
	source string
	prg    cel.Program
	// listing is prg with partial evaluation, for EvaluateListing, where mcp.tool.arguments is
	// unknown; nil when the rule does not read the arguments (prg then serves listings too).
	listing cel.Program
	// states is prg tracking every node's value, run when prg gives errNotApplicable to find
	// another error that CEL's logic hid behind it (see notApplicable); nil when the rule does
	// not read the mcp variable.
	states cel.Program
	// tracked: the rule's estimated worst-case cost exceeds the cost limit, so its programs
	// track cost and watch the request's context.
	tracked bool
}

// sizeBounds is the cost estimator of Compile: it bounds the size of every input (a string's
// length, a list's or map's entries) by where it comes from.
type sizeBounds struct{ header, body uint64 }

// EstimateSize implements checker.CostEstimator.
func (b sizeBounds) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil
	}
	limit := b.header
	if path[0] == "mcp" {
		limit = b.body
	}
	return &checker.SizeEstimate{Min: 0, Max: limit}
}

// EstimateCallCost implements checker.CostEstimator: CEL's own call costs apply.
func (sizeBounds) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Compile compiles rules once (per policy version). Every rule is compiled; the error joins one
// error per bad rule, each naming the rule's source and CEL's message.
func (e *Env) Compile(rules []*policyv1.Rule) (*RuleSet, error) {
	rs := &RuleSet{}
	var errs []error
	claims := map[string]bool{}
	args := &argNames{}
	for i, r := range rules {
		source := r.GetSource()
		if source == "" {
			source = "rules[" + strconv.Itoa(i) + "]"
		}
		checked, err := e.check(r.GetExpression())
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", source, err))
			continue
		}
		est, err := e.env.EstimateCost(checked, sizeBounds{header: e.opts.MaxHeaderBytes, body: e.opts.MaxBodyBytes})
		tracked := err != nil || est.Max > e.opts.CostLimit
		popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
		if tracked {
			popts = append(popts, cel.CostLimit(e.opts.CostLimit), cel.InterruptCheckFrequency(e.opts.InterruptCheckFrequency))
		}
		mcp, readsArgs := references(checked.NativeRep(), claims, args)
		// A rule that reads the arguments has a partial-evaluation program for listings; one that
		// reads the mcp variable a state-tracking one (hiddenError).
		program := func(extra ...cel.EvalOption) (cel.Program, error) {
			return e.env.Program(checked, append(slices.Clip(popts), cel.EvalOptions(extra...))...)
		}
		prg, err := program()
		var listing, states cel.Program
		if err == nil && readsArgs {
			listing, err = program(cel.OptPartialEval)
		}
		if err == nil && mcp {
			states, err = program(cel.OptTrackState)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", source, err))
			continue
		}
		compiled := rule{source: source, prg: prg, listing: listing, states: states, tracked: tracked}
		switch r.GetAction() {
		case policyv1.Rule_DENY:
			rs.deny = append(rs.deny, compiled)
		case policyv1.Rule_REQUIRE:
			rs.require = append(rs.require, compiled)
		case policyv1.Rule_ALLOW:
			rs.allow = append(rs.allow, compiled)
		default:
			errs = append(errs, fmt.Errorf("rule %s: unknown action %d", source, r.GetAction()))
			continue
		}
		rs.needsMCP = rs.needsMCP || mcp
		rs.readsArgs = rs.readsArgs || readsArgs
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for name := range claims {
		rs.claims = append(rs.claims, name)
	}
	slices.Sort(rs.claims)
	if len(args.names) > 0 || args.elems != nil {
		rs.args = args
	}
	if len(rs.allow) > 0 {
		rs.noAllow = allowPolicies(rs.allow) + NoAllowMatched
	}
	return rs, nil
}

// allowPolicies names the policies of the ALLOW rules: each rule's source without its "#..."
// (a source is "Kind/namespace/name#traffic[i]" or "...#mcp[i]"), once each, joined by "+" in the rules' order, as
// the translator joins the sources of a merged policy's name.
func allowPolicies(allow []rule) string {
	var names []string
	for _, r := range allow {
		name := r.source
		if i := strings.LastIndexByte(name, '#'); i > 0 {
			name = name[:i]
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return strings.Join(names, "+")
}

// references records the claims an expression names (jwt.X, jwt["X"]) and the argument members
// it selects, and reports whether it reads the mcp variable and the tool arguments
// (mcp.tool.arguments).
func references(a *ast.AST, claims map[string]bool, selected *argNames) (mcp, args bool) {
	isJWT := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && e.AsIdent() == "jwt" }
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		selected.addSelection(e)
		switch e.Kind() {
		case ast.IdentKind:
			if e.AsIdent() == "mcp" {
				mcp = true
			}
		case ast.SelectKind:
			sel := e.AsSelect()
			if isJWT(sel.Operand()) {
				claims[sel.FieldName()] = true
			}
			// Any .arguments, not only mcp.tool.arguments: a comprehension may have bound mcp.tool
			// to a variable of its own. A claim named arguments only costs a needless check.
			if sel.FieldName() == "arguments" {
				args = true
			}
		case ast.CallKind:
			call := e.AsCall()
			if call.FunctionName() == "_[_]" && len(call.Args()) == 2 && isJWT(call.Args()[0]) {
				if name, ok := stringLiteral(call.Args()[1]); ok {
					claims[name] = true
				}
			}
		}
	}))
	return mcp, args
}

// NeedsMCP reports whether any rule reads the mcp variable, i.e. needs the request body parsed.
func (rs *RuleSet) NeedsMCP() bool { return rs != nil && rs.needsMCP }

// ReadsArguments reports whether any rule reads mcp.tool.arguments, whose members the caller
// must then read the way every server does.
func (rs *RuleSet) ReadsArguments() bool { return rs != nil && rs.readsArgs }

// ReferencedClaims returns the claim names the rules read (jwt.X and jwt["X"]), sorted, for
// audit lines. The slice is shared: do not modify it.
func (rs *RuleSet) ReferencedClaims() []string {
	if rs == nil {
		return nil
	}
	return rs.claims
}

// Len returns the number of rules.
func (rs *RuleSet) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.deny) + len(rs.require) + len(rs.allow)
}

// NoAllowMatched ends Decision.Rule when a RuleSet has ALLOW rules and none of them matched: the
// rule is then "POLICY: no ALLOW rule matched" (see Decision.Rule).
const NoAllowMatched = ": no ALLOW rule matched"

// Decision is the outcome of evaluating a RuleSet.
type Decision struct {
	// Allowed is the verdict.
	Allowed bool
	// Rule is the source of the rule that decided. When ALLOW rules exist and none matched (the
	// request is denied), it names the policies of those rules and says so:
	// "Kind/namespace/name: no ALLOW rule matched" (several policies joined by "+"; see
	// NoAllowMatched), followed by " (failed at run time: RULE, ...)" naming the ALLOW rules
	// that failed, if any. "" when the request is allowed because there are no ALLOW rules.
	Rule string
	// Errors are the rules that failed at run time (each a *RuleError), for the caller to log.
	// nil when none failed.
	Errors []error
}

// RuleError is a rule's failure at run time. Its message may quote the request's values (an
// argument, a claim, a header: `IP Address "..." parse error`, `no such key: ...`); a log that
// must not show them writes Rule and ValueFree.
type RuleError struct {
	// Rule is the rule's source.
	Rule string
	Err  error
}

func (e *RuleError) Error() string { return "rule " + e.Rule + ": " + e.Err.Error() }

func (e *RuleError) Unwrap() error { return e.Err }

// ValueFree returns the error's message without the values it may hold: each quoted part ("...",
// `...`, '...') becomes "[REDACTED]", and what follows the first ": " (where CEL and Go put the
// value: "no such key: VALUE", "error parsing regexp: missing closing ): `VALUE`") is dropped.
// What is left says what kind of error the rule met ("IP Address \"[REDACTED]\" parse error",
// "no such key", "error parsing regexp").
func (e *RuleError) ValueFree() string {
	return valueFree(e.Err.Error())
}

// valueFreeCuts are the messages that hold a value without quotes or ": " before it.
var valueFreeCuts = []string{"unsupported index value "}

func valueFree(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == ':' && i+1 < len(msg) && msg[i+1] == ' ' {
			break
		}
		if c == '"' || c == '`' || c == '\'' {
			end := closingQuote(msg, i)
			if end < 0 {
				// An unclosed quote: what follows may be the value.
				b.WriteString(`"[REDACTED]"`)
				break
			}
			b.WriteString(`"[REDACTED]"`)
			i = end
			continue
		}
		b.WriteByte(c)
	}
	out := b.String()
	for _, cut := range valueFreeCuts {
		if i := strings.Index(out, cut); i >= 0 {
			out = out[:i+len(cut)-1]
		}
	}
	return out
}

// closingQuote returns the index of the quote that closes the one at msg[open], or -1; in a
// double-quoted part (Go's %q) a backslash escapes the next byte.
func closingQuote(msg string, open int) int {
	q := msg[open]
	for i := open + 1; i < len(msg); i++ {
		switch msg[i] {
		case '\\':
			if q == '"' {
				i++
			}
		case q:
			return i
		}
	}
	return -1
}

// Evaluate applies the rules to in. ctx interrupts the comprehensions of rules that run under the
// cost limit. A rule that fails at run time (a missing claim, a cost over the limit, a result
// that is not a bool) is reported in Decision.Errors and fails closed: a DENY rule that fails
// denies, a REQUIRE rule that fails is not met (denies), an ALLOW rule that fails does not allow.
// (Otherwise a client could skip a DENY rule by making it fail, say with arguments large enough
// to exceed the cost limit.) in is read, and may cache its decoded tool arguments.
func (rs *RuleSet) Evaluate(ctx context.Context, in *Input) Decision {
	return rs.decide(ctx, in, false)
}

// EvaluateListing decides whether a tools/list answer shows the tool in.ToolName to the caller
// whose request in describes: whether some tools/call of it could be allowed (Decision.Allowed).
// The call's arguments are not known when listing, so the rules that read mcp.tool.arguments are
// evaluated with them unknown (in.ToolArguments is not read), and such a rule may hold, not hold,
// or depend on the arguments. The rules combine as in Evaluate, three-valued: the tool is hidden
// only when every call would be refused, because a DENY rule holds or fails, a REQUIRE rule does
// not hold or fails, or ALLOW rules exist and none of them holds or may hold. A rule that depends
// on the arguments keeps the tool listed, and each call is still decided by Evaluate with its
// arguments, so listing a tool allows nothing.
//
// Unknown outweighs an error, as in CEL's logic: a rule such as `jwt.team == "ops" &&
// mcp.tool.arguments.x == 1` evaluated without that claim depends on the arguments (a call whose x
// is not 1 makes it false, whatever the claim), while a rule that fails whatever the arguments
// (`jwt.team.startsWith(mcp.tool.arguments.x)` without the claim) fails closed as in Evaluate.
//
// Decision.Rule is the rule that hides the tool, or the ALLOW rule that holds or may hold ("" when
// listed because there are no ALLOW rules); Decision.Errors as in Evaluate.
func (rs *RuleSet) EvaluateListing(ctx context.Context, in *Input) Decision {
	return rs.decide(ctx, in, true)
}

// decide combines the rules' outcomes on in (see Evaluate and EvaluateListing).
func (rs *RuleSet) decide(ctx context.Context, in *Input, listing bool) Decision {
	if rs == nil {
		return Decision{Allowed: true}
	}
	var d Decision
	for i := range rs.deny {
		if o := rs.deny[i].eval(ctx, in, listing, &d); o == held || o == failed {
			d.Allowed, d.Rule = false, rs.deny[i].source
			return d
		}
	}
	for i := range rs.require {
		if o := rs.require[i].eval(ctx, in, listing, &d); o == notHeld || o == failed {
			d.Allowed, d.Rule = false, rs.require[i].source
			return d
		}
	}
	for i := range rs.allow {
		if o := rs.allow[i].eval(ctx, in, listing, &d); o == held || o == mayHold {
			d.Allowed, d.Rule = true, rs.allow[i].source
			return d
		}
	}
	d.Allowed = len(rs.allow) == 0
	if !d.Allowed {
		d.Rule = rs.noAllow + failedRules(d.Errors)
	}
	return d
}

// failedRules names the rules of errs (the ALLOW rules that failed at run time, when none held),
// for Decision.Rule: " (failed at run time: SOURCE, ...)", or "" when none failed. The audit line
// then says why a rule expected to hold did not; the log has the error.
func failedRules(errs []error) string {
	var names []string
	for _, err := range errs {
		var re *RuleError
		if errors.As(err, &re) && !slices.Contains(names, re.Rule) {
			names = append(names, re.Rule)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (failed at run time: " + strings.Join(names, ", ") + ")"
}

// hiddenError returns an error other than errNotApplicable that the evaluation of the rule on
// act met, if any: CEL's || and && give the first error of their operands, so in
// `mcp.tool.name == "rm" || jwt.team != "ops"` on a prompts/get, the missing claim's error hides
// behind the tool's errNotApplicable, and the rule, failed, would pass for not applying. The
// rule runs again tracking every node's value (only when it gave errNotApplicable: a rule on
// another item).
func (r *rule) hiddenError(ctx context.Context, act any) error {
	_, det, _ := r.run(ctx, r.states, act)
	if det == nil {
		return nil
	}
	state := det.State()
	for _, id := range state.IDs() {
		v, ok := state.Value(id)
		if !ok || !types.IsError(v) {
			continue
		}
		if err, _ := v.Value().(error); err != nil && !errors.Is(err, errNotApplicable) {
			return err
		}
	}
	return nil
}

// run evaluates one of the rule's programs on act, watching ctx when the rule is tracked.
func (r *rule) run(ctx context.Context, prg cel.Program, act any) (ref.Val, *cel.EvalDetails, error) {
	if r.tracked {
		return prg.ContextEval(ctx, act)
	}
	return prg.Eval(act)
}

// outcome is a rule's result on an input.
type outcome uint8

const (
	notHeld outcome = iota
	held
	// mayHold: the result depends on what is unknown (listing only).
	mayHold
	// failed: a run-time error, recorded in the Decision.
	failed
	// notApplicable: the result depends on an MCP item the request does not concern (a rule on
	// mcp.tool in a prompts/get), and no other error was met (hiddenError): the rule neither
	// allows nor denies.
	notApplicable
)

// eval evaluates the rule on in; with listing, by its partial-evaluation program when it has one.
func (r *rule) eval(ctx context.Context, in *Input, listing bool, d *Decision) outcome {
	prg := r.prg
	var act any = in
	if listing && r.listing != nil {
		prg, act = r.listing, (*listingInput)(in)
	}
	out, _, err := r.run(ctx, prg, act)
	if err != nil {
		if errors.Is(err, errNotApplicable) {
			if err = r.hiddenError(ctx, act); err == nil {
				return notApplicable
			}
		}
		d.Errors = append(d.Errors, &RuleError{Rule: r.source, Err: err})
		return failed
	}
	switch v := out.(type) {
	case types.Bool:
		if v {
			return held
		}
		return notHeld
	case *types.Unknown:
		// An interrupted comprehension is an error value, which the unknown outweighs: an
		// evaluation the request's end cut short decides nothing.
		if r.tracked && ctx.Err() != nil {
			d.Errors = append(d.Errors, &RuleError{Rule: r.source, Err: context.Cause(ctx)})
			return failed
		}
		return mayHold
	}
	d.Errors = append(d.Errors, &RuleError{Rule: r.source, Err: fmt.Errorf("gives %s, want bool", out.Type().TypeName())})
	return failed
}
