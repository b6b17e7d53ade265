package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints the report for people: one line per finding, then a summary.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Findings) > 0 {
		if r.Repaired {
			fmt.Fprintln(tw, "KIND\tID\tPATH\tWHY ORPHANED\tREPAIR")
		} else {
			fmt.Fprintln(tw, "KIND\tID\tPATH\tWHY ORPHANED")
		}
	}
	for _, f := range r.Findings {
		why := f.Reason
		if f.Young {
			why += " [younger than the grace period: left alone]"
		} else if !f.Repairable {
			why += " [not repaired]"
		}
		id := short(f.ID)
		if id == "" {
			id = "-"
		}
		if r.Repaired {
			res := f.Result
			if res == "" {
				res = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Kind, id, f.Path, why, res)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Kind, id, f.Path, why)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	verdict := "clean"
	if n := r.Orphans(); n > 0 {
		verdict = fmt.Sprintf("%d orphaned", n)
		if r.Repaired {
			verdict += " left after repair"
		}
	}
	_, err := fmt.Fprintf(w, "namespace %s: %d sandboxes, %d containers, %d tasks owned; %d findings; %s\n",
		r.Namespace, r.Owned.Sandboxes, r.Owned.Containers, r.Owned.Tasks, len(r.Findings), verdict)
	return err
}

// WriteJSON prints the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	out := struct {
		*Report
		Orphans int `json:"orphans"`
	}{r, r.Orphans()}
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
