{
  "format": "ecg-edge/signature",
  "version": 1,
  "algorithm": "ed25519",
  "key_id": "a7f23de3f344fdf2",
  "manifest_sha256": "d3661f44c67d80a8ab1705006e750fd4e21ff91fe8608f6927e2fe801bf46dac",
  "signed_utc": "2026-12-01T22:33:14+00:00",
  "signature": "k7SrmQWvr5MwnP45kH+6MZ9zHFs4vKQgVoa5t2DaLq4PkIBz6VZtfRiTASPOEA6abBDF64ddD4/vELS88ECzBg=="
}
