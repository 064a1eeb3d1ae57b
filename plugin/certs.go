package plugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Certificates for the network transport.
//
// A cluster has one CA; every node has one certificate, valid both as a
// server and as a client certificate, whose Subject Common Name is the
// node's replica ID. That CN is the identity this package checks, on both
// sides: Dial refuses a server whose certificate's CN is not the replica ID
// it dialed for, and a server refuses a client whose CN its AllowPeer
// rejects. Node certificates also carry DNS/IP SANs for the given hosts
// (default localhost, 127.0.0.1, ::1) so that standard tools such as
// grpcurl can connect.
//
// Layout of a certificate directory (GenerateCerts):
//
//	ca.crt  ca.key          the CA (keep ca.key offline in production)
//	<id>.crt  <id>.key      one pair per node
//
// Keys are ECDSA P-256 in PKCS#8 PEM, mode 0600.

// CA file names in a certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// certValidity is the validity of generated certificates.
const certValidity = 5 * 365 * 24 * time.Hour

// GenerateCA creates a new CA in dir (ca.crt, ca.key). It refuses to
// overwrite an existing CA.
func GenerateCA(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err == nil {
		return fmt.Errorf("plugin: certs: %s already exists", filepath.Join(dir, CACertFile))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pebble-ae CA", Organization: []string{"pebble-ae"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writePair(dir, "ca", der, key)
}

// GenerateNodeCert creates <id>.crt and <id>.key in dir, signed by the CA
// in dir, with CN = id and SANs for hosts (default localhost, 127.0.0.1,
// ::1; IP addresses become IP SANs, others DNS SANs).
func GenerateNodeCert(dir string, id record.ReplicaID, hosts ...string) error {
	if err := checkCertRequest([]record.ReplicaID{id}, hosts); err != nil {
		return err
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: string(id), Organization: []string{"pebble-ae"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, string(id), der, key)
}

// GenerateCerts creates a CA (unless dir already has one) and a
// certificate for each replica ID, for local clusters and tests (what
// `pebble-ae certs --dir D --ids a,b,c` runs).
func GenerateCerts(dir string, ids []record.ReplicaID, hosts ...string) error {
	if err := checkCertRequest(ids, hosts); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); errors.Is(err, os.ErrNotExist) {
		if err := GenerateCA(dir); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := GenerateNodeCert(dir, id, hosts...); err != nil {
			return fmt.Errorf("plugin: certs for %q: %w", id, err)
		}
	}
	return nil
}

// checkCertRequest returns an error wrapping ErrBadCertRequest unless ids
// are at least one valid, distinct replica ID that can name a file and
// hosts holds no empty name.
func checkCertRequest(ids []record.ReplicaID, hosts []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: no replica IDs", ErrBadCertRequest)
	}
	seen := make(map[record.ReplicaID]bool, len(ids))
	for _, id := range ids {
		if err := id.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadCertRequest, err)
		}
		if filepath.Base(string(id)) != string(id) || id == "ca" {
			return fmt.Errorf("%w: replica ID %q cannot name a certificate file", ErrBadCertRequest, id)
		}
		if seen[id] {
			return fmt.Errorf("%w: replica ID %q given twice", ErrBadCertRequest, id)
		}
		seen[id] = true
	}
	for _, h := range hosts {
		if strings.TrimSpace(h) == "" || strings.TrimSpace(h) != h {
			return fmt.Errorf("%w: host name %q", ErrBadCertRequest, h)
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func loadCA(dir string) (*x509.Certificate, any, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("plugin: certs: load CA: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	return cert, pair.PrivateKey, nil
}

// loadPool reads the CA certificate of dir into a pool.
func loadPool(dir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("plugin: certs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("plugin: certs: no certificate in %s", filepath.Join(dir, CACertFile))
	}
	return pool, nil
}

// LoadTLSConfig returns the mutual-TLS configuration of node id from a
// certificate directory: its own certificate (for both roles) and the CA
// as the root for servers and clients. Pass it to ListenAndServe and Dial,
// which add the replica-ID checks.
func LoadTLSConfig(dir string, id record.ReplicaID) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, string(id)+".crt"), filepath.Join(dir, string(id)+".key"))
	if err != nil {
		return nil, fmt.Errorf("plugin: certs: node %q: %w", id, err)
	}
	pool, err := loadPool(dir)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}
