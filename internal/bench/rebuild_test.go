package bench

import (
	"context"
	"testing"
)

func TestRebuildSmall(t *testing.T) {
	res, err := Rebuild(context.Background(), RebuildConfig{Keys: 20000, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.KeysPerSec <= 0 || res.ScanHashKeysPerSec <= 0 || res.Leaves < 100 || res.TreeMemoryBytes <= 0 {
		t.Fatalf("implausible: %+v", res)
	}
	t.Logf("%+v", res)
}
