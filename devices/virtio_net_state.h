/* virtio-net in the state tree (checkpoint/restore and migration).
 *
 *   /devices/netN            version 1 (type set by the snapshot code)
 *     transport              the virtio-pci function (virtio_pci_state.h):
 *                            config space, MSI-X, virtio common state,
 *                            every queue with its last_avail/used indices
 *     net                    version 1: mac (6 bytes), status (VIRTIO_NET_S_*),
 *                            queue-pairs (configured), active-pairs
 *                            (VQ_PAIRS_SET), mtu
 *
 * The back end (TAP fds) is not state: the restored device opens the TAP its
 * configuration names (which a restore may override). Load checks the whole
 * node before changing anything; then it replays the transport, sets the
 * device state, re-applies TUNSETOFFLOAD and TUNSETQUEUE for the negotiated
 * features and active pairs, and looks at every queue once (buffers posted
 * before the snapshot). Peers relearn the MAC through
 * virtio_net_announce_all() once the whole VM is restored. */
#ifndef DEVICES_VIRTIO_NET_STATE_H
#define DEVICES_VIRTIO_NET_STATE_H

#include "devices/virtio_net.h"
#include "migration/state.h"

#define VIRTIO_NET_STATE_VERSION 1

/* @node is the device's own node; the device must be on a PCI bus. */
int virtio_net_state_save(struct virtio_net *net, struct state_node *node);
/* All or nothing: -EINVAL (message naming node/property in the tree) and the
 * device untouched when anything in @node is wrong. */
int virtio_net_state_load(struct virtio_net *net, const struct state_node *node);

#endif
