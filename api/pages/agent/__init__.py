"""Templates and stylesheet of the support agents' dashboard (a package so they ship in wheels)."""
