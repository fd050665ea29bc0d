import t from 'tap';
import { addressBlock, clientIpResolver, unmapped } from '../../src/http/client-ip.js';

t.test('the client IP honours trustProxy', async (t) => {
  const cases: Array<[string, Parameters<typeof clientIpResolver>[0], string, string | undefined, string]> = [
    ['no trust ignores X-Forwarded-For', false, '10.0.0.1', '1.2.3.4', '10.0.0.1'],
    ['no trust strips the IPv4-mapped prefix', false, '::ffff:10.0.0.1', undefined, '10.0.0.1'],
    ['full trust takes the leftmost hop', true, '10.0.0.1', '1.2.3.4, 10.0.0.9', '1.2.3.4'],
    ['full trust with garbage falls back to the peer', true, '10.0.0.1', 'not-an-ip', '10.0.0.1'],
    ['one hop trusts only the peer', 1, '10.0.0.1', '6.6.6.6, 1.2.3.4', '1.2.3.4'],
    ['two hops', 2, '10.0.0.1', '6.6.6.6, 1.2.3.4', '6.6.6.6'],
    ['more hops than the chain clamps to the leftmost', 5, '10.0.0.1', '1.2.3.4', '1.2.3.4'],
    ['CIDR list skips trusted hops from the right', ['10.0.0.0/8'], '10.0.0.1', '6.6.6.6, 1.2.3.4, 10.1.1.1', '1.2.3.4'],
    ['CIDR list ignores X-Forwarded-For from an untrusted peer', ['10.0.0.0/8'], '8.8.8.8', '1.2.3.4', '8.8.8.8'],
    ['CIDR list with a single address', ['127.0.0.1'], '127.0.0.1', '1.2.3.4', '1.2.3.4'],
    ['CIDR list stops at a garbage hop', ['10.0.0.0/8'], '10.0.0.1', '1.2.3.4, junk', '10.0.0.1'],
    // A dual-stack proxy writes IPv4 clients as mapped IPv6: they are still IPv4 clients, each its own.
    ['full trust unmaps a mapped hop', true, '10.0.0.1', '::ffff:198.51.100.7', '198.51.100.7'],
    ['hop count unmaps a mapped hop', 1, '10.0.0.1', '::ffff:198.51.100.7', '198.51.100.7'],
    ['CIDR list unmaps a mapped hop', ['127.0.0.1/32'], '::ffff:127.0.0.1', '::FFFF:c633:6407', '198.51.100.7'],
    ['CIDR list matches a mapped trusted hop against IPv4 CIDRs', ['10.0.0.0/8'], '10.0.0.1', '1.2.3.4, ::ffff:10.1.1.1', '1.2.3.4'],
  ];
  for (const [name, trust, peer, xff, want] of cases) t.equal(clientIpResolver(trust)(peer, xff), want, name);
});

t.test('IPv6 clients are counted by their /64, IPv4 by address', async (t) => {
  t.equal(addressBlock('1.2.3.4'), '1.2.3.4');
  t.equal(addressBlock('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  t.equal(addressBlock('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(addressBlock('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(addressBlock('::1'), '0:0:0:0::/64');
  t.equal(addressBlock('2001:0DB8:0001:0002::9'), '2001:db8:1:2::/64');
  t.equal(addressBlock('fe80::1%eth0'), 'fe80:0:0:0::/64');
});

t.test('IPv4 written as IPv6 is counted as that IPv4 address, never as the shared block ::/64', async (t) => {
  const v4 = ['::ffff:198.51.100.7', '::FFFF:198.51.100.7', '::ffff:c633:6407', '0:0:0:0:0:ffff:c633:6407', '::198.51.100.7'];
  for (const ip of v4) {
    t.equal(unmapped(ip), '198.51.100.7', ip);
    t.equal(addressBlock(ip), '198.51.100.7', ip);
  }
  t.not(addressBlock('::ffff:203.0.113.66'), addressBlock('::ffff:198.51.100.7'), 'two mapped clients, two blocks');
  for (const ip of ['::1', '::', '2001:db8::ffff:1:2', '::ffff', '1.2.3.4', 'junk', '64:ff9b::c633:6407']) t.equal(unmapped(ip), ip, `${ip} as is`);
});
