# The plugins the template needs, pinned; `packer init packer/` installs them (Packer >= 1.7).
# Debian's packer 1.6.6 predates this block and has both plugins built in: it reads a copy
# of this folder without this file (tlops.tooling.packer.stage makes one). Keep nothing else
# here, so that copy loses nothing but the pins.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "= 1.3.3"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = "= 1.1.1"
    }
  }
}
