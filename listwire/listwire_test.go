package listwire

import (
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMemo(t *testing.T) {
	var m Memo[runtimeapi.ContainerState]
	if _, ok := m.Get(runtimeapi.ContainerState_CONTAINER_RUNNING); ok {
		t.Fatal("empty memo returned an entry")
	}
	m.Set(runtimeapi.ContainerState_CONTAINER_RUNNING, []byte("r"))
	for _, tc := range []struct {
		key  runtimeapi.ContainerState
		want string
		ok   bool
	}{
		{runtimeapi.ContainerState_CONTAINER_RUNNING, "r", true},
		{runtimeapi.ContainerState_CONTAINER_EXITED, "", false},
	} {
		got, ok := m.Get(tc.key)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("Get(%v) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	m.Set(runtimeapi.ContainerState_CONTAINER_EXITED, []byte("e"))
	if _, ok := m.Get(runtimeapi.ContainerState_CONTAINER_RUNNING); ok {
		t.Error("the replaced entry is still returned")
	}
}

// TestResponseDecodesAsMessages: a response made of Field entries is, once
// encoded, the response holding those messages, in order.
func TestResponseDecodesAsMessages(t *testing.T) {
	items := []*runtimeapi.Container{
		{Id: "a", State: runtimeapi.ContainerState_CONTAINER_RUNNING, Labels: map[string]string{"k": "v"}},
		{Id: "b", Metadata: &runtimeapi.ContainerMetadata{Name: "b", Attempt: 2}, Annotations: map[string]string{"x": "y"}},
		{},
	}
	for n := range len(items) + 1 {
		var entries [][]byte
		for _, it := range items[:n] {
			e, err := Field(1, it)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		resp := &runtimeapi.ListContainersResponse{}
		Response(resp, entries)
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := &runtimeapi.ListContainersResponse{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		want := &runtimeapi.ListContainersResponse{Containers: items[:n]}
		if !proto.Equal(got, want) {
			t.Errorf("%d entries: decoded %v, want %v", n, got, want)
		}
		if dec := Decode(resp); !proto.Equal(dec, want) {
			t.Errorf("%d entries: Decode = %v, want %v", n, dec, want)
		}
	}
	plain := &runtimeapi.ListContainersResponse{Containers: items}
	if Decode(plain) != plain {
		t.Error("Decode copied a response without entries")
	}
}
