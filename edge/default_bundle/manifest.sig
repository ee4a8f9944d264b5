{
  "format": "ecg-edge/signature",
  "version": 1,
  "algorithm": "ed25519",
  "key_id": "a7f23de3f344fdf2",
  "manifest_sha256": "0e1750b93c5b8f0dce1719aad9c2bf1a76f34050b7b055492baccba1144d89d0",
  "signed_utc": "2026-12-08T00:26:22+00:00",
  "signature": "2N5X8WFrLGyMcl0PGeLqN0b2w+DwKX2V23asQ7B0ZlBw2Pgy/Pjn1nbNp+2muVIssBJWT/YXnTxetCLBwklMCA=="
}
