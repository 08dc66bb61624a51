# Values computed once from the variables: names, paths, and the tags every artifact carries.

locals {
  # Canonical's account: the only owner whose Ubuntu images the bake starts from.
  canonical_owner = "099720109477"
  # The key of the build instance's root volume, so of the image's snapshot: the AWS managed
  # alias/aws/ebs, never the account's default EBS key, which may be a customer managed key
  # the operator (and the node's starter, the control function) holds no rights on
  # (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption-requirements.html). The
  # gpu_node role's launch template names the same key (_gpu_node_ebs_kms_key).
  ebs_kms_key = "alias/aws/ebs"

  build_time = formatdate("YYYYMMDD-hhmmss", timestamp())
  ami_name   = "${var.ami_name_prefix}-${local.build_time}"

  repo_root     = var.repo_root != "" ? var.repo_root : "${path.root}/.."
  node_playbook = var.node_playbook != "" ? var.node_playbook : "${local.repo_root}/playbooks/node.yml"

  # What the image is: the same tags on the image, its snapshot and, through the manifest,
  # on the local bake's image record. The source image is added where Packer knows it.
  image_tags = {
    Project      = var.project_tag
    Role         = "gpu"
    Name         = local.ami_name
    Gpu          = var.gpu ? "nvidia" : "none"
    NvidiaDriver = var.gpu ? var.cuda_driver_version : "none"
    Cuda         = var.gpu ? "${var.cuda_runtime_package}=${var.cuda_runtime_version}" : "none"
    Vllm         = "${var.vllm_package}==${var.vllm_version}"
    Model        = "${var.model_repo}@${var.model_revision}"
    BuiltAt      = local.build_time
  }

  # The node roles' own variables (playbooks/node.yml), and the inventory-wide ones the
  # shared preflight expects. node_extra_vars_json adds settings; it cannot change what the
  # tags record, so what a tag says is what the roles were told.
  node_vars = merge(jsondecode(var.node_extra_vars_json), {
    project_tag            = var.project_tag
    aws_region             = var.aws_region
    cuda_install_driver    = var.gpu
    cuda_check_gpu         = var.gpu
    cuda_driver_version    = var.cuda_driver_version
    cuda_runtime_package   = var.cuda_runtime_package
    cuda_runtime_version   = var.cuda_runtime_version
    vllm_package           = var.vllm_package
    vllm_version           = var.vllm_version
    vllm_model_repo        = var.model_repo
    vllm_model_revision    = var.model_revision
    vllm_served_model_name = var.served_model_name
    watcher_model          = var.served_model_name
    tlops_baking           = true
  })

  # ansible-playbook runs on this machine with the repository's settings (not the caller's
  # output format), against a host it has never seen: no known_hosts entry is kept.
  ansible_env = [
    "ANSIBLE_CONFIG=${local.repo_root}/ansible.cfg",
    "ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default",
    "ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks",
    "ANSIBLE_HOST_KEY_CHECKING=False",
    "ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null",
    "ANSIBLE_NOCOLOR=1",
    "TL_HUGGINGFACE_TOKEN=${var.huggingface_token}",
  ]
}
