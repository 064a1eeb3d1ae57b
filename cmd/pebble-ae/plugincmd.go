package main

import (
	"fmt"
	"strings"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
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
			var list []record.ReplicaID
			for _, id := range strings.Split(ids, ",") {
				list = append(list, record.ReplicaID(strings.TrimSpace(id)))
			}
			var hs []string
			if hosts != "" {
				for _, h := range strings.Split(hosts, ",") {
					hs = append(hs, strings.TrimSpace(h))
				}
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
