/* virtio-net state save/load. See virtio_net_state.h. */
#include "devices/virtio_net_state.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <stddef.h>
#include <string.h>

#include "devices/virtio_pci_state.h"
#include "vmm/log.h"

#define NET_NODE_VERSION       1
#define NET_TRANSPORT_VERSION  1
#define NET_STATUS_BITS        (VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)

/* ---- save ---- */

static int save_net(struct virtio_net *net, struct state_node *parent)
{
	struct state_node *n = state_add_node(parent, "net", NET_NODE_VERSION);
	struct virtio_net_state st;

	if (!n)
		return -ENOMEM;
	pthread_mutex_lock(&net->vdev.lock);
	st = net->st;
	pthread_mutex_unlock(&net->vdev.lock);
	if (state_put_bytes(n, "mac", st.mac, sizeof(st.mac)) || state_put_u32(n, "status", st.status) ||
	    state_put_u32(n, "queue-pairs", net->nr_pairs) ||
	    state_put_u32(n, "active-pairs", st.active_pairs) || state_put_u32(n, "mtu", net->mtu))
		return -ENOMEM;
	return 0;
}

static int save_all(struct virtio_net *net, struct state_node *node)
{
	struct state_node *t;
	int r;

	r = state_set_version(node, VIRTIO_NET_STATE_VERSION);
	if (r)
		return r;
	t = state_add_node(node, "transport", NET_TRANSPORT_VERSION);
	if (!t)
		return -ENOMEM;
	r = virtio_pci_state_save(&net->vp, t);
	return r ? r : save_net(net, node);
}

int virtio_net_state_save(struct virtio_net *net, struct state_node *node)
{
	bool stopped;
	int r;

	if (!net->pci_attached)
		return -EOPNOTSUPP;
	/* The RX read posted ahead holds popped chains: take it back so the
	 * saved last_avail_idx counts them as available (the target posts its
	 * own read), then carry on as before. */
	pthread_mutex_lock(&net->vdev.lock);
	stopped = net->quiesced;
	pthread_mutex_unlock(&net->vdev.lock);
	if (!stopped)
		virtio_net_quiesce(net, true);
	r = save_all(net, node);
	if (!stopped)
		virtio_net_quiesce(net, false);
	return r;
}

/* ---- load: check everything, then apply ---- */

/* The queue layout (rx/tx per pair, then ctrl: §5.1.2) must be the same;
 * checked first, as the transport's queues and MSI-X table depend on it. */
static int check_layout(const struct virtio_net *net, const struct state_node *n)
{
	uint32_t pairs;

	if (state_node_version(n, 1, NET_NODE_VERSION, NULL) || state_get_u32(n, "queue-pairs", &pairs))
		return -EINVAL;
	if (pairs != net->nr_pairs)
		return state_fail(n, "queue-pairs %u, this device has %u (configure queues=%u)", pairs,
				  net->nr_pairs, pairs);
	return 0;
}

/* The device's own node, checked against this device and against the
 * features of the transport state it comes with (parsed, not applied). */
static int parse_net(const struct virtio_net *net, const struct state_node *n, uint64_t features,
		     struct virtio_net_state *st)
{
	uint32_t v, pairs = net->nr_pairs, active, mtu;

	if (state_get_bytes(n, "mac", st->mac, sizeof(st->mac)) ||
	    state_get_u32_range(n, "status", 0, NET_STATUS_BITS, &v) ||
	    state_get_u32_range(n, "active-pairs", 1, VIRTIO_NET_MAX_PAIRS, &active) ||
	    state_get_u32(n, "mtu", &mtu))
		return -EINVAL;
	/* §5.1.6.5.5: VQ_PAIRS_SET accepts 1..max_virtqueue_pairs. */
	if (active > pairs)
		return state_fail(n, "active-pairs %u exceeds queue-pairs %u", active, pairs);
	/* The guest read mtu from config space (§5.1.4) and sized its buffers. */
	if (mtu != net->mtu)
		return state_fail(n, "mtu %u, this device has %u", mtu, net->mtu);
	/* §5.1.4.2: the device sets ANNOUNCE only with GUEST_ANNOUNCE negotiated;
	 * more than one pair only with MQ (§5.1.6.5.5). */
	if ((v & VIRTIO_NET_S_ANNOUNCE) && !(features & (1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE)))
		return state_fail(n, "status has ANNOUNCE but GUEST_ANNOUNCE was not negotiated");
	if (active > 1 && !(features & (1ULL << VIRTIO_NET_F_MQ)))
		return state_fail(n, "active-pairs %u without MQ negotiated", active);
	if (st->mac[0] & 1)
		return state_fail(n, "mac is a multicast address");
	st->status = (uint16_t)v;
	st->active_pairs = (uint16_t)active;
	return 0;
}

int virtio_net_state_load(struct virtio_net *net, const struct state_node *node)
{
	struct virtio_pci_parsed *p = NULL;
	struct virtio_net_state st;
	struct state_node t, n;
	int r;

	if (!net->pci_attached)
		return -EOPNOTSUPP;
	if (state_node_version(node, 1, VIRTIO_NET_STATE_VERSION, NULL) ||
	    state_child(node, "transport", &t) ||
	    state_node_version(&t, 1, NET_TRANSPORT_VERSION, NULL) || state_child(node, "net", &n))
		return -EINVAL;
	r = check_layout(net, &n);
	if (r)
		return r;
	r = virtio_pci_state_parse(&net->vp, &t, &p);
	if (r)
		return r;
	memset(&st, 0, sizeof(st));
	r = parse_net(net, &n, virtio_pci_parsed_features(p), &st);
	if (r)
		goto out;
	/* Everything checked: from here on the device changes. Nothing of the
	 * old queue state may complete into the new one. */
	pthread_mutex_lock(&net->vdev.lock);
	virtio_net_drain(net, true);
	pthread_mutex_unlock(&net->vdev.lock);
	r = virtio_pci_state_apply(&net->vp, p);
	if (r)
		goto out;
	pthread_mutex_lock(&net->vdev.lock);
	net->st = st;
	pthread_mutex_unlock(&net->vdev.lock);
	virtio_net_backend_sync(net);
out:
	virtio_pci_parsed_free(p);
	return r;
}

/* ---- struct device glue (virtio_net_dev_ops) ---- */

static struct virtio_net *dev_net(struct device *dev)
{
	return (struct virtio_net *)((char *)dev - offsetof(struct virtio_net, dev));
}

int virtio_net_dev_save(struct device *dev, struct state_node *node)
{
	return virtio_net_state_save(dev_net(dev), node);
}

int virtio_net_dev_load(struct device *dev, const struct state_node *node)
{
	return virtio_net_state_load(dev_net(dev), node);
}
