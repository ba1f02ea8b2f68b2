# Test fixture: the shape of a lock file terraform init writes against the
# registry (zh: hashes beside h1:). The hashes are made up.

provider "registry.terraform.io/coder/coder" {
  version     = "2.20.0"
  constraints = "~> 2.20"
  hashes = [
    "h1:0m7dSTzJtS/1oDrJVnp0AbUrVF2rcsDDUdUSBlYldOo=",
    "zh:1d3c6fc3d7e5b31e4c3d0bd5a1e4b1e1b1f2e3e9c2b7b2a2f0e3b9f6b9c1d7d1",
    "zh:4b0bb9d5bd6e43d4c8e2e8d7a1b0f9f4d6b9c0a7e2f3b4c5d6e7f8a9b0c1d2e3",
  ]
}

provider "registry.terraform.io/kreuzwerker/docker" {
  version     = "4.6.0"
  constraints = "~> 4.6"
  hashes = [
    "h1:HnTcN5qOSOAunFoKoxBFoLidXkRPs6ipldb3Mz9u52w=",
    "zh:0a2a0b6e6bca5f4bd5f2c3c1c8cbbb7b1d3c8f1a4a86d87b6d8b1dd0f3b8b1e9",
  ]
}
