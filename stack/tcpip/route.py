"""A host's routing table: on-link prefixes and gateways, longest-prefix match."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

IpNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Route:
    prefix: IpNetwork
    interface: Any  # the Interface that sends it
    gateway: IPv4Address | IPv6Address | None = None  # None = on-link
    metric: int = 256

    @property
    def on_link(self) -> bool:
        return self.gateway is None

    def describe(self) -> str:
        via = "on-link" if self.gateway is None else str(self.gateway)
        return f"{self.prefix} via {via} dev {getattr(self.interface, 'name', '?')} metric {self.metric}"


class RouteTable:
    """Routes per family, kept sorted by (prefix length desc, metric) so the first match wins."""

    def __init__(self) -> None:
        self._routes: dict[int, list[Route]] = {4: [], 6: []}
        self._cache: dict[bytes, Route | None] = {}

    def add(self, prefix: str | IpNetwork, interface: Any, gateway: IPv4Address | IPv6Address | None = None,
            metric: int = 256) -> Route:
        net = prefix if isinstance(prefix, (IPv4Network, IPv6Network)) else ip_network(prefix, strict=False)
        route = Route(net, interface, gateway, metric)
        routes = self._routes[net.version]
        routes.append(route)
        routes.sort(key=lambda r: (-r.prefix.prefixlen, r.metric))
        self._cache.clear()
        return route

    def remove(self, route: Route) -> None:
        self._routes[route.prefix.version].remove(route)
        self._cache.clear()

    def lookup(self, destination: IPv4Address | IPv6Address) -> Route | None:
        """Longest-prefix match (ties: lowest metric, then oldest)."""
        key = destination.packed
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = None
        for route in self._routes[destination.version]:
            if destination in route.prefix:
                found = route
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = found
        return found

    def routes(self) -> list[Route]:
        return self._routes[4] + self._routes[6]


_ = IPv6Address
