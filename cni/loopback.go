package cni

import (
	"fmt"

	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// setLoopbackUp brings the loopback interface of the network namespace at
// path up, as the loopback CNI plugin's ADD does, without running it (a
// process per pod). Its DEL (lo down) is not needed: the namespace is
// removed with the pod.
func setLoopbackUp(path string) error {
	err := cnins.WithNetNSPath(path, func(cnins.NetNS) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return err
		}
		if ifr.Uint16()&unix.IFF_UP != 0 {
			return nil
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
	})
	if err != nil {
		return fmt.Errorf("bringing up lo in %s: %w", path, err)
	}
	return nil
}
