/* The test guest's network stack: ARP (RFC 826), IPv4 (RFC 791), ICMP echo
 * (RFC 792), UDP echo (RFC 768). Just enough to answer ping and echo
 * datagrams; every frame costs a few hundred instructions. */
#include "vnet.h"

#define ETH_HLEN     14
#define ETH_P_IP     0x0800
#define ETH_P_ARP    0x0806
#define IP_HLEN      20
#define IPPROTO_ICMP 1
#define IPPROTO_UDP  17

static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 get32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static void put32(u8 *p, u32 v) { put16(p, (u16)(v >> 16)); put16(p + 2, (u16)v); }

u16 net_csum(const void *data, u32 len, u32 sum)
{
	const u8 *p = data;

	for (; len > 1; len -= 2, p += 2)
		sum += get16(p);
	if (len)
		sum += (u32)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

bool net_parse_ip(const char *s, u32 *ip, u32 *mask)
{
	u32 v = 0, part = 0, dots = 0, bits = 32;
	bool digit = false;

	for (; *s && *s != '/'; s++) {
		if (*s == '.') {
			if (!digit || part > 255 || ++dots > 3)
				return false;
			v = v << 8 | part;
			part = 0;
			digit = false;
		} else if (*s >= '0' && *s <= '9') {
			part = part * 10 + (u32)(*s - '0');
			digit = true;
		} else {
			return false;
		}
	}
	if (!digit || part > 255 || dots != 3)
		return false;
	v = v << 8 | part;
	if (*s == '/') {
		u64 b;
		if (!parse_u64(s + 1, &b) || b > 32)
			return false;
		bits = (u32)b;
	}
	*ip = v;
	*mask = bits ? ~0u << (32 - bits) : 0;
	return true;
}

static void eth_reply_header(u8 *out, const u8 *in, const u8 *mymac)
{
	memcpy(out, in + 6, 6);      /* to the sender */
	memcpy(out + 6, mymac, 6);
	memcpy(out + 12, in + 12, 2);
}

static void arp_input(struct netif *nif, const u8 *f, u32 len)
{
	u8 out[ETH_HLEN + 28];
	const u8 *a = f + ETH_HLEN;

	/* Ethernet/IPv4 request for our address. */
	if (len < ETH_HLEN + 28 || get16(a) != 1 || get16(a + 2) != ETH_P_IP || get16(a + 6) != 1 ||
	    get32(a + 24) != nif->ip)
		return;
	eth_reply_header(out, f, nif->mac);
	u8 *r = out + ETH_HLEN;
	memcpy(r, a, 6);               /* htype, ptype, hlen, plen */
	put16(r + 6, 2);               /* reply */
	memcpy(r + 8, nif->mac, 6);
	put32(r + 14, nif->ip);
	memcpy(r + 18, a + 8, 10);     /* target = the requester's mac + ip */
	if (vnet_send(nif->dev, out, sizeof(out)) == 0) {
		nif->tx_frames++;
		nif->arp_replies++;
	}
}

/* Reply in place: swap addresses, fix up checksums, send. */
static void ip_reply(struct netif *nif, u8 *f, u32 len)
{
	u8 *ip = f + ETH_HLEN, mac[6];
	u32 src = get32(ip + 12);

	memcpy(mac, f + 6, 6);
	memcpy(f, mac, 6);
	memcpy(f + 6, nif->mac, 6);
	put32(ip + 12, nif->ip);
	put32(ip + 16, src);
	ip[8] = 64;                    /* TTL */
	put16(ip + 10, 0);
	put16(ip + 10, net_csum(ip, IP_HLEN, 0));
	if (vnet_send(nif->dev, f, len) == 0)
		nif->tx_frames++;
}

static void ip_input(struct netif *nif, u8 *f, u32 len)
{
	u8 *ip = f + ETH_HLEN;
	u32 tot, dst;

	if (len < ETH_HLEN + IP_HLEN || ip[0] != 0x45)   /* IPv4 without options only */
		return;
	tot = get16(ip + 2);
	dst = get32(ip + 16);
	if (tot < IP_HLEN || ETH_HLEN + tot > len || dst != nif->ip || (get16(ip + 6) & 0x3fff))
		return;   /* not for us, truncated, or a fragment */
	u8 *l4 = ip + IP_HLEN;
	u32 l4len = tot - IP_HLEN;
	if (ip[9] == IPPROTO_ICMP && l4len >= 8 && l4[0] == 8) {
		/* Echo reply: type 8 -> 0; RFC 1624 incremental checksum update. */
		u32 sum = (u16)~get16(l4 + 2) + (u16)~0x0800u + 0x0000;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		l4[0] = 0;
		put16(l4 + 2, (u16)~sum);
		nif->icmp_echo++;
		ip_reply(nif, f, ETH_HLEN + tot);
	} else if (ip[9] == IPPROTO_UDP && l4len >= 8) {
		u16 sport = get16(l4), dport = get16(l4 + 2);
		if (l4len >= 12 && !memcmp(l4 + 8, "stop", 4))
			nif->stop = true;
		put16(l4, dport);
		put16(l4 + 2, sport);
		put16(l4 + 6, 0);      /* checksum optional in IPv4 */
		nif->udp_echo++;
		ip_reply(nif, f, ETH_HLEN + tot);
	}
}

void net_input(struct netif *nif, const u8 *frame, u32 len)
{
	u8 *f = (u8 *)frame;

	nif->rx_frames++;
	if (len < ETH_HLEN)
		return;
	if (get16(f + 12) == ETH_P_ARP)
		arp_input(nif, f, len);
	else if (get16(f + 12) == ETH_P_IP && !memcmp(f, nif->mac, 6))
		ip_input(nif, f, len);
}

u32 net_build_udp(const struct netif *nif, u8 *buf, u32 frame_len, const u8 dst_mac[6],
		  u32 dst_ip, u16 sport, u16 dport)
{
	u8 *ip = buf + ETH_HLEN, *udp = ip + IP_HLEN;
	u32 tot;

	if (frame_len < ETH_HLEN + IP_HLEN + 8)
		frame_len = ETH_HLEN + IP_HLEN + 8;
	tot = frame_len - ETH_HLEN;
	memset(buf, 0, frame_len);
	memcpy(buf, dst_mac, 6);
	memcpy(buf + 6, nif->mac, 6);
	put16(buf + 12, ETH_P_IP);
	ip[0] = 0x45;
	put16(ip + 2, (u16)tot);
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	put32(ip + 12, nif->ip);
	put32(ip + 16, dst_ip);
	put16(ip + 10, net_csum(ip, IP_HLEN, 0));
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (u16)(tot - IP_HLEN));
	return frame_len;
}
