# What a bake does, whichever source: the node playbook, the validation, a clean-up, the manifest.

build {
  name    = "node"
  sources = ["source.amazon-ebs.gpu", "source.null.local"]

  # The same playbook that configures a node anywhere (the Ansible provisioner's own SSH
  # proxy offers only ssh-rsa, which OpenSSH 9 refuses: ansible connects directly).
  provisioner "ansible" {
    playbook_file = local.node_playbook
    use_proxy     = false
    user          = build.User
    groups        = ["node"]
    # The generated inventory lands beside packer/inventory/group_vars: the bake's settings.
    inventory_directory = "${path.root}/inventory"
    extra_arguments     = ["--become", "--extra-vars", jsonencode(local.node_vars)]
    ansible_env_vars    = local.ansible_env
  }

  # The validation: the GPU is there (nvidia-smi) and vLLM answers one completion. A failure
  # here fails the build: no image is made, bake_ami.yml publishes nothing.
  provisioner "shell" {
    script = "${path.root}/scripts/validate.sh"
    environment_vars = [
      "TL_VALIDATE_GPU=${var.gpu}",
      "TL_VALIDATE_URL=${var.inference_url}",
      "TL_VALIDATE_MODEL=${var.served_model_name}",
      "TL_VALIDATE_TIMEOUT_S=${var.validate_timeout_s}",
    ]
  }

  # Nothing of this build instance stays in the image: keys, machine id, logs.
  provisioner "shell" {
    script          = "${path.root}/scripts/cleanup.sh"
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh -eu '{{ .Path }}'"
  }

  post-processor "manifest" {
    output      = var.manifest_path
    strip_path  = true
    custom_data = local.image_tags
  }
}
