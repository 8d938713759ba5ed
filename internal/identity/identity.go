// Package identity manages a node's Ed25519 key and self-signed certificate,
// derives the node ID from the certificate, and builds mutual TLS 1.3
// configurations that accept only pinned peer IDs.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ID is a node's identity: the SHA-256 of its certificate (DER).
type ID [32]byte

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// String returns the canonical 52-character base32 form.
func (id ID) String() string { return enc.EncodeToString(id[:]) }

// Short returns the first 7 characters of the ID, used in conflict names.
func (id ID) Short() string { return id.String()[:7] }

// Short64 returns the first 8 bytes as an integer; version vectors key
// counters by it.
func (id ID) Short64() uint64 { return binary.BigEndian.Uint64(id[:8]) }

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses a node ID, ignoring case, dashes and spaces.
func ParseID(s string) (ID, error) {
	var id ID
	clean := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(s)))
	if len(clean) != 52 {
		return id, fmt.Errorf("node ID %q: want 52 base32 characters, got %d", s, len(clean))
	}
	b, err := enc.DecodeString(clean)
	if err != nil || len(b) != 32 {
		return id, fmt.Errorf("node ID %q: not valid base32", s)
	}
	copy(id[:], b)
	if id.String() != clean {
		return id, fmt.Errorf("node ID %q: not canonical", s)
	}
	return id, nil
}

// IDFromCert returns the ID of a DER-encoded certificate.
func IDFromCert(der []byte) ID { return sha256.Sum256(der) }

// Identity is a node's certificate and key.
type Identity struct {
	ID   ID
	Cert tls.Certificate
}

const (
	certFile = "cert.pem"
	keyFile  = "key.pem"
)

// Generate creates a new key and certificate in dir. It refuses to overwrite
// an existing identity.
func Generate(dir string) (*Identity, error) {
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("identity: %s already exists; refusing to overwrite", filepath.Join(dir, f))
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("identity: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tandem"},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("identity: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("identity: write key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("identity: write certificate: %w", err)
	}
	return Load(dir)
}

// Load reads the identity stored in dir.
func Load(dir string) (*Identity, error) {
	cp, kp := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	cert, err := tls.LoadX509KeyPair(cp, kp)
	if err != nil {
		return nil, fmt.Errorf("identity: load %s and %s: %w (run `tandem init --home %s` first?)", cp, kp, err, dir)
	}
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("identity: %s holds no certificate", cp)
	}
	if _, ok := cert.PrivateKey.(ed25519.PrivateKey); !ok {
		return nil, fmt.Errorf("identity: %s is not an Ed25519 key", kp)
	}
	return &Identity{ID: IDFromCert(cert.Certificate[0]), Cert: cert}, nil
}

// PeerID returns the ID of the certificate the peer presented.
func PeerID(st tls.ConnectionState) (ID, error) {
	if len(st.PeerCertificates) == 0 {
		return ID{}, errors.New("peer presented no certificate")
	}
	return IDFromCert(st.PeerCertificates[0].Raw), nil
}

// verifier returns a VerifyPeerCertificate callback that pins by ID.
func verifier(allow func(ID) error) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer presented no certificate")
		}
		c, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if _, ok := c.PublicKey.(ed25519.PublicKey); !ok {
			return errors.New("peer certificate is not Ed25519")
		}
		if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			return fmt.Errorf("peer certificate is not validly self-signed: %w", err)
		}
		return allow(IDFromCert(raw[0]))
	}
}

// ServerTLS returns a TLS 1.3 server configuration that requires a client
// certificate whose ID allow accepts.
func (i *Identity) ServerTLS(allow func(ID) error) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{i.Cert},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verifier(allow),
		NextProtos:            []string{"tandem/1"},
	}
}

// ClientTLS returns a TLS 1.3 client configuration that accepts only the
// server whose ID is expect.
func (i *Identity) ClientTLS(expect ID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{i.Cert},
		InsecureSkipVerify: true, // replaced by pinning in VerifyPeerCertificate
		VerifyPeerCertificate: verifier(func(got ID) error {
			if got != expect {
				return fmt.Errorf("peer certificate is %s, expected %s", got, expect)
			}
			return nil
		}),
		NextProtos: []string{"tandem/1"},
	}
}
