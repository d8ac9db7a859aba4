"""Device profiles shipped with edgekit: one TOML file per board type (installed as data)."""
