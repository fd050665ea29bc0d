// `?access_token=` (SPEC section 4): the credential of a WebSocket upgrade, which browsers cannot give headers.
import { twoCredentials } from './credential.js';

const NAME = 'access_token';

/**
 * The pairs of a query (`?a=1&b=2`, or '') as sent, each with its decoded name. Decoded as URLSearchParams decodes
 * a query ('+' is a space, then percent-decoding): an upstream decoding the query reads `access%5Ftoken` as
 * access_token too. The leading '&' keeps URLSearchParams from dropping a '?' that starts a pair.
 */
function pairs(search: string): Array<{ text: string; name: string | undefined; value: string | undefined }> {
  return search
    .slice(1)
    .split('&')
    .map((text) => {
      const [entry] = new URLSearchParams(`&${text}`);
      return { text, name: entry?.[0], value: entry?.[1] };
    });
}

/** Cheap test first: without the name or any '%', no pair can be the token. */
const mayHold = (search: string) => search.includes(NAME) || search.includes('%');

/**
 * Takes `access_token` out of a query: the token (decoded) and the query without it. Only the token pairs (and
 * one `&` each) are cut out of the text; every other byte is kept as the client sent it. Two are two credentials.
 */
export function takeQueryToken(search: string): { token: string | undefined; search: string } {
  if (!mayHold(search)) return { token: undefined, search };
  const kept: string[] = [];
  const tokens: string[] = [];
  for (const pair of pairs(search)) {
    if (pair.name === NAME) tokens.push(pair.value!);
    else kept.push(pair.text);
  }
  if (tokens.length > 1) throw twoCredentials();
  if (tokens.length === 0) return { token: undefined, search };
  const rest = kept.join('&');
  return { token: tokens[0], search: rest ? `?${rest}` : '' };
}

/** A query with the value of every `access_token` (in any spelling) shown as [redacted], for output. */
export function redactQueryToken(search: string): string {
  if (!mayHold(search)) return search;
  const shown = pairs(search).map(({ text, name }) => {
    if (name !== NAME) return text;
    const eq = text.indexOf('=');
    return eq === -1 ? `${text}=[redacted]` : `${text.slice(0, eq + 1)}[redacted]`;
  });
  return `?${shown.join('&')}`;
}
