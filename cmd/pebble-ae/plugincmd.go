package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/internal/cliflags"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/spf13/cobra"
)

func newPluginCmd() *cobra.Command {
	var f dbFlags
	var dir string
	c := &cobra.Command{
		Use:   "plugin",
		Short: "Serve a database as a go-plugin subprocess (started by a host, not by hand)",
		Long: `plugin serves the Replica gRPC service over go-plugin (gRPC only, AutoMTLS).
A host starts it with plugin.Open(ctx, path, "plugin", "--dir", D, ...); run by
hand it refuses, as go-plugin plugins do. It exits when its host dies.`,
		Example: `  // from Go:
  c, err := plugin.Open(ctx, "/usr/local/bin/pebble-ae", "plugin", "--dir", "/var/lib/r1", "--id", "r1")`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			if dir == "" {
				return fmt.Errorf("no database directory: pass --dir")
			}
			return plugin.ServePlugin(dir, o, nil)
		},
	}
	f.register(c.Flags())
	c.Flags().StringVar(&dir, "dir", "", "database directory")
	return c
}

func newCertsCmd() *cobra.Command {
	var dir, ids, hosts string
	c := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA and node certificates (ECDSA P-256) for a local cluster",
		Long: `certs writes ca.crt/ca.key (once) and <id>.crt/<id>.key for every node into
--dir. A node's replica ID is its certificate's common name; serve checks
that every peer's certificate names the peer it expects.`,
		Example: "  pebble-ae certs --dir /tmp/certs --ids n1,n2,n3 --hosts 127.0.0.1,localhost",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" || ids == "" {
				return fmt.Errorf("--dir and --ids are required")
			}
			var list []reconcile.ReplicaID
			for _, id := range strings.Split(ids, ",") {
				list = append(list, reconcile.ReplicaID(strings.TrimSpace(id)))
			}
			var hs []string
			if hosts != "" {
				hs = strings.Split(hosts, ",")
			}
			if err := plugin.GenerateCerts(dir, list, hs...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote CA and %d node certificates to %s\n", len(list), dir)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "output directory")
	c.Flags().StringVar(&ids, "ids", "", "comma-separated replica IDs")
	c.Flags().StringVar(&hosts, "hosts", "127.0.0.1,localhost", "host names and IPs for the certificates' SANs")
	return c
}

func newServeCmd() *cobra.Command {
	var f dbFlags
	var dir, listen, peers, certs string
	var insecure bool
	var interval time.Duration
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: serve the Replica service over mutual TLS and repair with peers",
		Example: `  pebble-ae certs --dir /tmp/certs --ids n1,n2
  pebble-ae serve --dir /tmp/n1 --id n1 --listen 127.0.0.1:7001 --certs /tmp/certs --peers n2=127.0.0.1:7002
  pebble-ae serve --dir /tmp/n2 --id n2 --listen 127.0.0.1:7002 --certs /tmp/certs --peers n1=127.0.0.1:7001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ps, err := cliflags.ParsePeers(peers)
			if err != nil {
				return err
			}
			if listen == "" {
				return fmt.Errorf("--listen is required")
			}
			e, err := f.open(ctx, dir)
			if err != nil {
				return err
			}
			defer e.Close()
			tlsCfg, lopts := (*tls.Config)(nil), &plugin.ListenOptions{Insecure: insecure}
			if !insecure {
				if certs == "" {
					return fmt.Errorf("--certs is required (or --insecure on loopback)")
				}
				tlsCfg, err = plugin.LoadTLSConfig(certs, e.ReplicaID())
				if err != nil {
					return err
				}
				allowed := map[reconcile.ReplicaID]bool{}
				for _, p := range ps {
					allowed[p.ID] = true
				}
				lopts.AllowPeer = func(id reconcile.ReplicaID) bool { return allowed[id] }
			}
			ready := make(chan net.Addr, 1)
			lopts.Ready = func(a net.Addr) { ready <- a }
			serveErr := make(chan error, 1)
			go func() { serveErr <- plugin.ListenAndServe(ctx, e, listen, tlsCfg, lopts) }()
			select {
			case a := <-ready:
				fmt.Fprintf(cmd.OutOrStdout(), "serving %s on %s\n", e.ReplicaID(), a)
			case err := <-serveErr:
				return err
			}
			var wg sync.WaitGroup
			for _, p := range ps {
				wg.Add(1)
				go func(p cliflags.Peer) {
					defer wg.Done()
					repairPeerLoop(ctx, cmd, e, p, tlsCfg, insecure, interval)
				}(p)
			}
			err = <-serveErr
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f.register(c.Flags())
	c.Flags().StringVar(&dir, "dir", "", "database directory")
	c.Flags().StringVar(&listen, "listen", "", "address to serve on, host:port")
	c.Flags().StringVar(&peers, "peers", "", "peers to repair with: id=host:port,...")
	c.Flags().StringVar(&certs, "certs", "", "directory with ca.crt and <id>.crt/.key (see pebble-ae certs)")
	c.Flags().BoolVar(&insecure, "insecure", false, "plaintext gRPC; refused on non-loopback addresses")
	c.Flags().DurationVar(&interval, "repair-interval", 10*time.Second, "mean interval between repair sessions with each peer (jittered ±50%)")
	return c
}

// repairPeerLoop runs a session with one peer every interval (jittered),
// reconnecting as needed, until ctx ends.
func repairPeerLoop(ctx context.Context, cmd *cobra.Command, local reconcile.Replica, p cliflags.Peer, tlsCfg *tls.Config, insecure bool, interval time.Duration) {
	var client *plugin.Client
	defer func() {
		if client != nil {
			client.Close()
		}
	}()
	for {
		d := time.Duration(float64(interval) * (0.5 + rand.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if client == nil {
			c, err := plugin.Dial(ctx, p.Addr, tlsCfg, p.ID, &plugin.DialOptions{Insecure: insecure})
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "repair %s: dial: %v\n", p.ID, err)
				continue
			}
			client = c
		}
		stats, err := reconcile.SyncAll(ctx, local, client, reconcile.SyncOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "repair %s: %v\n", p.ID, err)
			client.Close()
			client = nil
			continue
		}
		var repaired uint64
		for _, s := range stats {
			repaired += s.KeysRepaired()
		}
		if repaired > 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "repair %s: %d keys repaired\n", p.ID, repaired)
		}
	}
}

var _ = os.Stderr
