package merkle

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Partitioner maps keys to partitions: contiguous key ranges, each with its
// own tree. Partition i covers [Bounds(i)); the partitions are in key order
// and cover the whole user key space.
type Partitioner interface {
	// Name is a stable description of the partitioner and its parameters;
	// it is persisted and compared on open.
	Name() string
	// NumPartitions is the number of partitions, at least 1.
	NumPartitions() int
	// Partition returns the partition of key.
	Partition(key []byte) int
	// Bounds returns the range [start, end) of partition i; end is nil for
	// the last partition.
	Bounds(i int) (start, end []byte)
}

// SinglePartition returns the partitioner with one partition covering every
// key.
func SinglePartition() Partitioner { return splitPoints{} }

// SplitPoints returns a partitioner that splits the key space at the given
// strictly increasing, non-empty keys: len(points)+1 partitions.
func SplitPoints(points [][]byte) (Partitioner, error) {
	for i, p := range points {
		if len(p) == 0 {
			return nil, fmt.Errorf("%w: split point %d is empty", ErrInvalidParams, i)
		}
		if i > 0 && bytes.Compare(points[i-1], p) >= 0 {
			return nil, fmt.Errorf("%w: split points not strictly increasing at %d", ErrInvalidParams, i)
		}
	}
	cp := make([][]byte, len(points))
	for i, p := range points {
		cp[i] = append([]byte(nil), p...)
	}
	return splitPoints{points: cp}, nil
}

// FixedPrefix returns a partitioner with 256 partitions, one per value of a
// key's first byte (the empty key falls into partition 0).
func FixedPrefix() Partitioner {
	points := make([][]byte, 255)
	for i := range points {
		points[i] = []byte{byte(i + 1)}
	}
	return splitPoints{points: points, name: "prefix1"}
}

type splitPoints struct {
	points [][]byte
	name   string
}

func (s splitPoints) Name() string {
	if s.name != "" {
		return s.name
	}
	if len(s.points) == 0 {
		return "single"
	}
	var b strings.Builder
	b.WriteString("split:")
	for i, p := range s.points {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%x", p)
	}
	return b.String()
}

func (s splitPoints) NumPartitions() int { return len(s.points) + 1 }

func (s splitPoints) Partition(key []byte) int {
	// The number of split points <= key.
	return sort.Search(len(s.points), func(i int) bool { return bytes.Compare(s.points[i], key) > 0 })
}

func (s splitPoints) Bounds(i int) (start, end []byte) {
	if i > 0 {
		start = s.points[i-1]
	}
	if i < len(s.points) {
		end = s.points[i]
	}
	return start, end
}
