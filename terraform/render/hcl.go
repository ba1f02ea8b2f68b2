package render

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// writer builds one HCL file. Values that come from the configuration go
// through hclwrite.TokensForValue (lit) or hclwrite.TokensForTraversal;
// expressions are fixed HCL source in this package (expr), in which the
// identifier AGENT stands for the coder_agent resource. The first error is
// kept.
type writer struct {
	file     *hclwrite.File
	agentRef hclwrite.Tokens
	err      error
}

func newWriter(agentName string) *writer {
	return &writer{
		file:     hclwrite.NewEmptyFile(),
		agentRef: hclwrite.TokensForTraversal(hcl.Traversal{hcl.TraverseRoot{Name: "coder_agent"}, hcl.TraverseAttr{Name: agentName}}),
	}
}

// expr parses a fixed HCL expression and puts the agent resource in place
// of the identifier AGENT.
func (w *writer) expr(src string) hclwrite.Tokens {
	f, diags := hclwrite.ParseConfig([]byte("x = "+src+"\n"), "expr", hcl.InitialPos)
	if diags.HasErrors() {
		if w.err == nil {
			w.err = fmt.Errorf("render: expression %q: %s", src, diags.Error())
		}
		return nil
	}
	var out hclwrite.Tokens
	for _, t := range f.Body().GetAttribute("x").Expr().BuildTokens(nil) {
		if t.Type == hclsyntax.TokenIdent && string(t.Bytes) == "AGENT" {
			out = append(out, w.agentRef...)
			continue
		}
		out = append(out, t)
	}
	return out
}

// lit is a literal value.
func lit(v cty.Value) hclwrite.Tokens { return hclwrite.TokensForValue(v) }

func str(s string) hclwrite.Tokens { return lit(cty.StringVal(s)) }

func num(n int) hclwrite.Tokens { return lit(cty.NumberIntVal(int64(n))) }

// strMap is a literal map of strings, keys sorted.
func strMap(m map[string]string) hclwrite.Tokens {
	vals := map[string]cty.Value{}
	for k, v := range m {
		vals[k] = cty.StringVal(v)
	}
	if len(vals) == 0 {
		return lit(cty.MapValEmpty(cty.String))
	}
	return lit(cty.ObjectVal(vals))
}

// attrs sets attributes in the given order.
func attrs(b *hclwrite.Body, kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		b.SetAttributeRaw(kv[i].(string), kv[i+1].(hclwrite.Tokens))
	}
}

// comment appends comment lines to a body.
func comment(b *hclwrite.Body, lines ...string) {
	var ts hclwrite.Tokens
	for _, l := range lines {
		l = strings.TrimRight("# "+l, " ")
		ts = append(ts, &hclwrite.Token{Type: hclsyntax.TokenComment, Bytes: []byte(l + "\n")})
	}
	b.AppendUnstructuredTokens(ts)
}
