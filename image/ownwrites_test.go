package image

import (
	"testing"
	"time"
)

func TestOwnWrites(t *testing.T) {
	now := time.Unix(1000, 0)
	newOW := func() *ownWrites { return &ownWrites{now: func() time.Time { return now }} }
	const n = "example.test/a:1"

	t.Run("echo after the write is skipped once", func(t *testing.T) {
		o := newOW()
		if o.begin(n)(true) {
			t.Fatal("refresh without events")
		}
		if !o.event(n) {
			t.Error("echo not skipped")
		}
		if o.event(n) {
			t.Error("a second event (someone else's) skipped")
		}
		if o.event("other") {
			t.Error("event of another name skipped")
		}
		if len(o.names) != 0 {
			t.Errorf("state left: %v", o.names)
		}
	})
	t.Run("failed write leaves nothing", func(t *testing.T) {
		o := newOW()
		o.begin(n)(false)
		if o.event(n) {
			t.Error("event after a failed write skipped")
		}
	})
	t.Run("echo during the write is deferred and consumed", func(t *testing.T) {
		o := newOW()
		done := o.begin(n)
		if !o.event(n) {
			t.Error("event during the write not deferred")
		}
		if done(true) {
			t.Error("refresh asked for the write's own echo")
		}
		if o.event(n) {
			t.Error("later event skipped")
		}
	})
	t.Run("two events during the write: one is someone else's", func(t *testing.T) {
		o := newOW()
		done := o.begin(n)
		o.event(n)
		o.event(n)
		if !done(true) {
			t.Error("no refresh for the foreign event")
		}
		if o.event(n) {
			t.Error("later event skipped")
		}
	})
	t.Run("event during a failed write is refreshed by the writer", func(t *testing.T) {
		o := newOW()
		done := o.begin(n)
		o.event(n)
		if !done(false) {
			t.Error("no refresh")
		}
	})
	t.Run("done twice counts once", func(t *testing.T) {
		o := newOW()
		done := o.begin(n)
		done(true)
		done(true)
		o.event(n)
		if o.event(n) {
			t.Error("second event skipped")
		}
	})
	t.Run("overlapping writes", func(t *testing.T) {
		o := newOW()
		d1, d2 := o.begin(n), o.begin(n)
		o.event(n) // echo of 1
		if d1(true) {
			t.Error("refresh after first write")
		}
		if !o.event(n) { // echo of 2 while 2 is in flight
			t.Error("not deferred")
		}
		if d2(true) {
			t.Error("refresh after second write")
		}
		if o.event(n) {
			t.Error("foreign event after both skipped")
		}
	})
	t.Run("echo waited for a limited time", func(t *testing.T) {
		o := newOW()
		o.begin(n)(true)
		now = now.Add(ownWriteTTL + time.Second)
		if o.event(n) {
			t.Error("event long after the write skipped")
		}
	})
	t.Run("reset", func(t *testing.T) {
		o := newOW()
		o.begin(n)(true)
		done := o.begin("b")
		o.reset()
		if o.event(n) {
			t.Error("pending echo survived reset")
		}
		if !o.event("b") {
			t.Error("event during the write not deferred after reset")
		}
		if !done(true) {
			t.Error("write begun before reset consumed an event seen after it")
		}
		if o.event("b") {
			t.Error("pending echo of a write begun before reset")
		}
		if len(o.names) != 0 {
			t.Errorf("state left: %v", o.names)
		}
	})
}
