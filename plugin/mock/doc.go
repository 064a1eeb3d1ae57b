// Package mock holds gomock mocks of the interfaces the plugin package
// implements, for tests of the session driver against faults that are hard
// to produce for real (an Apply that fails after a successful Fetch, a
// replica that dies between rounds).
//
// Regenerate with `go generate ./plugin/mock` (mockgen v0.6.0:
// go install go.uber.org/mock/mockgen@v0.6.0).
package mock

//go:generate mockgen -typed -source=../../reconcile/replica.go -destination=replica_mock.go -package=mock Replica
