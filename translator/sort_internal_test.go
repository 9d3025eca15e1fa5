package translator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// TestSortByAge: sortByAge orders like slices.SortFunc with compareAge and then the kind, ties
// (the same object twice, as files can hold) included, at lengths that take each of the sort's
// paths (insertion sort, pdqsort's partitions, its pattern breaking on sorted runs).
func TestSortByAge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{0, 1, 2, 5, 12, 13, 50, 200, 1000} {
		for _, sorted := range []bool{false, true} {
			list := make([]*v1alpha1.AgentgatewayPolicy, n)
			for i := range list {
				p := &v1alpha1.AgentgatewayPolicy{ObjectMeta: metav1.ObjectMeta{
					Namespace:         fmt.Sprintf("ns%d", rng.IntN(3)),
					Name:              fmt.Sprintf("p%d", rng.IntN(n/2+1)),
					CreationTimestamp: metav1.NewTime(base.Add(time.Duration(rng.IntN(4)) * time.Second)),
				}}
				if rng.IntN(2) == 0 {
					p.Kind = KindEnterpriseAgentgatewayPolicy
				}
				list[i] = p
			}
			if sorted { // runs already in order, mostly
				slices.SortFunc(list[:n/2], func(a, b *v1alpha1.AgentgatewayPolicy) int { return strings.Compare(a.Name, b.Name) })
			}
			want := slices.Clone(list)
			slices.SortFunc(want, func(a, b *v1alpha1.AgentgatewayPolicy) int {
				if c := compareAge(&a.ObjectMeta, &b.ObjectMeta); c != 0 {
					return c
				}
				return strings.Compare(policyKind(a), policyKind(b))
			})
			got := slices.Clone(list)
			sortByAge(got, func(p *v1alpha1.AgentgatewayPolicy) (*metav1.ObjectMeta, string) { return &p.ObjectMeta, policyKind(p) })
			for i := range want {
				if got[i] != want[i] { // the same pointer: ties keep slices.SortFunc's order
					t.Fatalf("n=%d sorted=%v: element %d is %s/%s (%p), want %s/%s (%p)", n, sorted, i,
						got[i].Namespace, got[i].Name, got[i], want[i].Namespace, want[i].Name, want[i])
				}
			}
		}
	}
}

// TestCompareNsName: Gateway API breaks ties "in alphabetical order by {namespace}/{name}",
// which is not namespace, then name: "a-b/a" < "a/z" as '-' < '/'. compareNsName compares as
// the joined strings would.
func TestCompareNsName(t *testing.T) {
	names := []string{"a", "a-b", "a.b", "ab", "a0", "b", "z", ""}
	for _, ans := range names {
		for _, an := range names {
			for _, bns := range names {
				for _, bn := range names {
					want := strings.Compare(ans+"/"+an, bns+"/"+bn)
					if got := compareNsName(ans, an, bns, bn); got != want {
						t.Errorf("compareNsName(%q, %q, %q, %q) = %d, want %d", ans, an, bns, bn, got, want)
					}
				}
			}
		}
	}
}
