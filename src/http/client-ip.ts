// Which address is the client: the socket peer, or an X-Forwarded-For hop when server.trustProxy says so.
import { BlockList, isIP } from 'node:net';
import type { TrustProxy } from '../config/types.js';

/** (peer address, X-Forwarded-For value or undefined) -> client IP. Built once per plan. */
export type ClientIpResolver = (peer: string, forwardedFor: string | undefined) => string;

/**
 * An IPv4 address written as IPv6 as that IPv4 address: mapped (`::ffff:a.b.c.d`, also in hex as `::ffff:c633:6407`,
 * which a dual-stack socket and proxies on one write) or the deprecated compatible form (`::a.b.c.d`). Anything else
 * as is. Without this, every IPv4 client behind such a proxy would share one IPv6 /64 block (failed-auth guard,
 * `by: ip` limits).
 */
export function unmapped(ip: string): string {
  if (!ip.includes(':')) return ip;
  if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return ip.slice(7);
  const groups = ipv6Groups(ip);
  if (groups === null || groups.slice(0, 5).some((g) => g !== 0)) return ip;
  const [sixth, high, low] = groups.slice(5);
  if (sixth !== 0xffff && (sixth !== 0 || high === 0)) return ip;
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/** The eight 16-bit groups of an IPv6 address (an embedded dotted IPv4 tail counts as two), or null if it is not one. */
function ipv6Groups(ip: string): number[] | null {
  const address = ip.split('%')[0];
  if (isIP(address) !== 6) return null;
  let text = address;
  const dot = text.lastIndexOf(':');
  const tail = text.slice(dot + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number);
    text = `${text.slice(0, dot + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::');
  const front = head ? head.split(':') : [];
  const back = rest === undefined ? [] : rest ? rest.split(':') : [];
  const zeros = rest === undefined ? [] : new Array<string>(8 - front.length - back.length).fill('0');
  return [...front, ...zeros, ...back].map((g) => parseInt(g, 16));
}

export function clientIpResolver(trust: TrustProxy): ClientIpResolver {
  if (trust === false || trust === 0) return (peer) => unmapped(peer);
  if (trust === true) {
    return (peer, xff) => {
      if (!xff) return unmapped(peer);
      const first = unmapped(xff.split(',')[0].trim());
      return isIP(first) ? first : unmapped(peer);
    };
  }
  if (typeof trust === 'number') {
    // Trust `trust` hops: the client is the address that the outermost trusted proxy saw.
    return (peer, xff) => {
      const hops = xff ? xff.split(',').map((h) => unmapped(h.trim())) : [];
      const chain = [...hops, unmapped(peer)];
      const candidate = chain[Math.max(0, chain.length - 1 - trust)];
      return isIP(candidate) ? candidate : unmapped(peer);
    };
  }
  const isTrusted = trustedAddresses(trust);
  // Walk from the nearest hop outwards, skipping trusted proxies; the first untrusted address is the client.
  return (peer, xff) => {
    let ip = unmapped(peer);
    if (!isTrusted(ip) || !xff) return ip;
    const hops = xff.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = unmapped(hops[i].trim());
      if (!isIP(hop)) return ip;
      ip = hop;
      if (!isTrusted(ip)) return ip;
    }
    return ip;
  };
}

function trustedAddresses(cidrs: readonly string[]): (ip: string) => boolean {
  const trusted = new BlockList();
  for (const cidr of cidrs) {
    const [addr, bits] = cidr.split('/');
    const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) trusted.addAddress(addr, family);
    else trusted.addSubnet(addr, Number(bits), family);
  }
  return (ip) => {
    const family = isIP(ip);
    return family !== 0 && trusted.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  };
}

/** Whether the peer that connected to us may speak for the client (its X-Forwarded-* and Forwarded are believed). */
export type PeerTrust = (peer: string) => boolean;

export function peerTrust(trust: TrustProxy): PeerTrust {
  if (trust === false || trust === 0) return () => false;
  if (trust === true || typeof trust === 'number') return () => true;
  // With a list, a client connecting directly from outside it is not a proxy and cannot vouch for itself.
  const isTrusted = trustedAddresses(trust);
  return (peer) => isTrusted(unmapped(peer));
}

/**
 * The block a client address is counted under: IPv4 as is, IPv6 by its /64, since one subscriber
 * usually holds a whole /64 and could otherwise rotate addresses to dodge per-IP limits.
 */
export function addressBlock(ip: string): string {
  if (!ip.includes(':')) return ip;
  const v4 = unmapped(ip);
  if (v4 !== ip) return v4;
  const groups = ipv6Groups(ip);
  return groups === null ? ip : `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}
