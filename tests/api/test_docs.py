"""``/docs`` works on a machine without internet: nothing on it comes from a third party."""

from __future__ import annotations

import re

import httpx

# Every place an HTML page names something the browser will fetch.
_FETCHED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


async def test_docs_loads_every_script_and_style_from_the_server_itself(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "://" not in html  # no absolute URL at all: no CDN, no validator badge, no fonts

    urls = [src or url for src, url in _FETCHED.findall(html)]
    assert any(u.endswith(".js") for u in urls), html
    assert any(u.endswith(".css") for u in urls), html
    for url in urls:
        assert url.startswith("/"), url  # this server's own path...
        assert not url.startswith("//"), url  # ...not another host's
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
    script = await client.get(next(u for u in urls if u.endswith("swagger-ui-bundle.js")))
    assert "SwaggerUIBundle" in script.text


async def test_the_cdn_pages_fastapi_would_serve_are_gone(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/openapi.json")).status_code == 200
