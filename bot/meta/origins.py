"""Which origins a Graph-given URL may name for the token to follow it: Graph's own and Meta's media host."""

from __future__ import annotations

import httpx

# Where Meta serves WhatsApp media: `GET /{media_id}` answers with a short-lived URL on this host, fetched with
# the number's token (`https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=…`; docs/meta-api.md,
# "Media").
META_MEDIA_ORIGIN = "https://lookaside.fbsbx.com"


class UntrustedURL(Exception):
    """A URL from Graph's answer (a media `url`, a `paging.next`) outside Graph's own origins: the token is not
    sent there, and nothing is fetched."""

    def __init__(self, url: str, origin: str) -> None:
        super().__init__(f"{origin or url[:100]} is not one of Graph's origins; not followed with the token")
        self.url = url
        self.origin = origin


def origin_of(url: httpx.URL) -> str:
    """scheme://host[:port] with the default port left out, for comparing origins."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default else ""
    return f"{url.scheme}://{url.host}{port}" if url.scheme and url.host else ""
