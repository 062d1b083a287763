package layers

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/graph"
)

// name gives every layer and block a name, recovered from the file when the
// file says it unambiguously.
func (r *recognizer) name() {
	items := make([]named, len(r.linears))
	for i, l := range r.linears {
		items[i] = named{node: l.Node, weight: l.Weight, bias: l.Bias}
	}
	recovered := r.recoverNames(items)
	heads := 0
	others := 0
	for i, l := range r.linears {
		if n := recovered[i]; n != "" {
			l.Name = n
			continue
		}
		l.Structural = true
		switch {
		case l.Kind == KindHead:
			l.Name = "head"
			if heads > 0 {
				l.Name = fmt.Sprintf("head_%d", heads)
			}
			heads++
		case l.Block < 0:
			l.Name = fmt.Sprintf("linear_%d", others)
			others++
		case strings.HasPrefix(l.Kind, "fc"):
			l.Name = fmt.Sprintf("blocks.%d.mlp.%s", l.Block, l.Kind)
		default:
			l.Name = fmt.Sprintf("blocks.%d.attn.%s", l.Block, l.Kind)
		}
	}
	// structural names may meet recovered ones: keep every name unique
	taken := map[string]bool{}
	for _, l := range r.linears {
		if !l.Structural {
			taken[l.Name] = true
		}
	}
	for _, l := range r.linears {
		if !l.Structural {
			continue
		}
		base := l.Name
		for i := 2; taken[l.Name]; i++ {
			l.Name = fmt.Sprintf("%s_%d", base, i)
		}
		taken[l.Name] = true
	}
	r.nameBlocks()
	r.nameConvs()
}

// named is a layer to name: its node, weight and bias.
type named struct {
	node         *graph.Node
	weight, bias *graph.Value
}

// recoverNames finds each layer's name in the file, "" where the file does
// not say it unambiguously: (a) the weight's own name when no other node
// reads it, (b) the exporter's module scope when no other of the layers
// shares it, (c) the bias's own name when no other node reads it. A name
// found for two layers is given to neither.
func (r *recognizer) recoverNames(items []named) []string {
	uses := func(v *graph.Value) int {
		if v == nil {
			return 0
		}
		n := len(r.consumers[v])
		if slices.Contains(r.g.Outputs, v) {
			n++
		}
		return n
	}
	scopes := map[string]int{}
	for _, it := range items {
		if s := scopeName(it.node.Name); s != "" {
			scopes[s]++
		}
	}
	recovered := make([]string, len(items))
	for i, it := range items {
		switch {
		case uses(it.weight) == 1 && stripSuffix(it.weight.Name, "weight") != "":
			recovered[i] = stripSuffix(it.weight.Name, "weight")
		case scopes[scopeName(it.node.Name)] == 1:
			recovered[i] = scopeName(it.node.Name)
		case it.bias != nil && it.bias.Param && uses(it.bias) == 1 && stripSuffix(it.bias.Name, "bias") != "":
			recovered[i] = stripSuffix(it.bias.Name, "bias")
		}
	}
	count := map[string]int{}
	for _, n := range recovered {
		count[n]++
	}
	for i, n := range recovered {
		if count[n] > 1 {
			recovered[i] = ""
		}
	}
	return recovered
}

// nameBlocks names each block by the common prefix of its layers' recovered
// names (and of its Softmax's scope), when they cover both the attention and
// the MLP and the prefixes of all blocks differ; otherwise "blocks.N".
func (r *recognizer) nameBlocks() {
	names := make([]string, len(r.blocks))
	seen := map[string]int{}
	for i, b := range r.blocks {
		var prefix []string
		attn, mlp := false, false
		for _, l := range b.Linears {
			if l.Structural {
				continue
			}
			if strings.HasPrefix(l.Kind, "fc") {
				mlp = true
			} else {
				attn = true
			}
			parts := strings.Split(l.Name, ".")
			if prefix == nil {
				prefix = parts
				continue
			}
			n := 0
			for n < len(prefix) && n < len(parts) && prefix[n] == parts[n] {
				n++
			}
			prefix = prefix[:n]
		}
		// the attention's own scope speaks for its side when its layers are unnamed
		if s := scopeName(b.Softmax.Name); s != "" && prefix != nil {
			parts := strings.Split(s, ".")
			n := 0
			for n < len(prefix) && n < len(parts) && prefix[n] == parts[n] {
				n++
			}
			prefix, attn = prefix[:n], true
		}
		if attn && mlp && len(prefix) > 0 {
			names[i] = strings.Join(prefix, ".")
			seen[names[i]]++
		}
	}
	for i, b := range r.blocks {
		if names[i] != "" && seen[names[i]] == 1 {
			b.Name = names[i]
		} else {
			b.Name, b.Structural = fmt.Sprintf("blocks.%d", i), true
		}
	}
}

// stripSuffix turns "blocks.0.attn.qkv.weight" into "blocks.0.attn.qkv" and
// "self_attn.in_proj_weight" into "self_attn.in_proj"; "" when name does not
// end in .suffix or _suffix.
func stripSuffix(name, suffix string) string {
	for _, sep := range []string{".", "_"} {
		if s, ok := strings.CutSuffix(name, sep+suffix); ok && validName(s) {
			return s
		}
	}
	return ""
}

// validName accepts dotted module paths: no empty part, no spaces, no "::".
func validName(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\n/:") {
		return false
	}
	for _, p := range strings.Split(s, ".") {
		if p == "" {
			return false
		}
	}
	return true
}

// scopeName turns a TorchScript node scope into a module path:
// "/blocks/blocks.3/mlp/fc1/MatMul" -> "blocks.3.mlp.fc1". Each scope level
// holds the module's unqualified name, which repeats its container's name
// before an index ("blocks" then "blocks.3"); the repetition is folded. The
// last level is the node's own name. Returns "" for names that are not scopes.
func scopeName(node string) string {
	rest, ok := strings.CutPrefix(node, "/")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return ""
	}
	var path []string
	for _, p := range parts[:len(parts)-1] {
		if p == "" {
			return ""
		}
		if n := len(path); n > 0 && strings.HasPrefix(p, path[n-1]+".") {
			path[n-1] = p
			continue
		}
		path = append(path, p)
	}
	s := strings.Join(path, ".")
	if !validName(s) {
		return ""
	}
	return s
}
