// Whether what this page sends crosses the network in clear: plain HTTP to another machine.

/** Names and addresses that never leave this computer: localhost, 127.0.0.0/8, [::1]. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** True when this page came over plain HTTP from another machine: a token it sends is readable on the way. */
export function sendsInClear(where: Pick<Location, "protocol" | "hostname"> = location): boolean {
  return where.protocol === "http:" && !isLoopback(where.hostname);
}
