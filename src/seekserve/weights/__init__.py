"""Model weights between machines: `seekserve pull` (hub or mirror -> a verified folder) and
`seekserve mirror serve` (folders -> HTTP with Range and checksums, a site's edge cache)."""
