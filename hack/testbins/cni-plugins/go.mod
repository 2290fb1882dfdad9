// Wrapper module: builds upstream's bridge and macvlan CNI plugins (containernetworking/plugins),
// which speak every CNI version up to 1.1.0 (Debian 12's 1.1.1 stop at 1.0.0), from the Go module
// proxy. tests/cni_netns.rs runs them as the main plugin at cniVersion 1.1.0.
// hack/build-testbins.sh builds it. Nothing imports this module; it has no Go code of its own.
module nvipam.test/testbins/cni-plugins

go 1.26.0

tool (
	github.com/containernetworking/plugins/plugins/main/bridge
	github.com/containernetworking/plugins/plugins/main/macvlan
)

require (
	github.com/containernetworking/cni v1.3.0 // indirect
	github.com/containernetworking/plugins v1.9.0 // indirect
	github.com/coreos/go-iptables v0.8.0 // indirect
	github.com/networkplumbing/go-nft v0.4.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/safchain/ethtool v0.6.2 // indirect
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	golang.org/x/sys v0.35.0 // indirect
	sigs.k8s.io/knftables v0.0.18 // indirect
)
