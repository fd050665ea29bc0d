// Which address is the client: the socket peer, or an X-Forwarded-For hop when server.trustProxy says so.
import { BlockList, isIP } from 'node:net';
import type { TrustProxy } from '../config/types.js';

/** (peer address, X-Forwarded-For value or undefined) -> client IP. Built once per plan. */
export type ClientIpResolver = (peer: string, forwardedFor: string | undefined) => string;

export const unmapped = (ip: string): string => (ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip);

export function clientIpResolver(trust: TrustProxy): ClientIpResolver {
  if (trust === false || trust === 0) return (peer) => unmapped(peer);
  if (trust === true) {
    return (peer, xff) => {
      if (!xff) return unmapped(peer);
      const first = xff.split(',')[0].trim();
      return isIP(first) ? first : unmapped(peer);
    };
  }
  if (typeof trust === 'number') {
    // Trust `trust` hops: the client is the address that the outermost trusted proxy saw.
    return (peer, xff) => {
      const hops = xff ? xff.split(',').map((h) => h.trim()) : [];
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
      const hop = hops[i].trim();
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
  const [head, tail] = ip.split('%')[0].split('::');
  const front = head ? head.split(':') : [];
  const back = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...new Array(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back];
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
