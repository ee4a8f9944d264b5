{
  "format": "ecg-edge/signature",
  "version": 1,
  "algorithm": "ed25519",
  "key_id": "a7f23de3f344fdf2",
  "manifest_sha256": "33b0d36db294728aee4a1d5ee9e7087c4e30badfec55defd620f9fa72808825f",
  "signed_utc": "2026-12-01T22:29:01+00:00",
  "signature": "qlgf3mO2fPC7eQfTQYkP6Ytl4BGaAvoRMSiE2CdBZXrYyaGFN4B5rSa14rK8LtywxvjYtGNIz+EzUNfq03vFCQ=="
}
