# Where the image is built: a GPU instance on AWS, or a local container for the stand-in.

# The node's image on AWS: Ubuntu 22.04 from Canonical, the node roles, the validation, an AMI.
source "amazon-ebs" "gpu" {
  region        = var.aws_region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null

  source_ami_filter {
    owners      = [local.canonical_owner]
    most_recent = true
    filters = {
      name                = var.source_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
  }

  ami_name        = local.ami_name
  ami_description = "tinyllama node: ${local.image_tags.Vllm}, ${var.model_repo}, CUDA ${local.image_tags.Cuda}"
  ena_support     = true
  ssh_username    = "ubuntu"
  ssh_timeout     = "10m"

  # SSH to the build instance from the ranges the operator named, else from this machine's
  # public address only: with neither, the plugin would open port 22 to 0.0.0.0/0
  # (https://developer.hashicorp.com/packer/integrations/hashicorp/amazon/latest/components/builder/ebs,
  # temporary_security_group_source_cidrs and temporary_security_group_source_public_ip).
  # No port 22 open to 0.0.0.0/0: Security Hub's EC2.13 and the CIS AWS Foundations benchmark
  # (https://docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html#ec2-13).
  temporary_security_group_source_cidrs     = var.ssh_source_cidrs
  temporary_security_group_source_public_ip = length(var.ssh_source_cidrs) == 0

  # The build instance answers IMDSv2 only, like the node it becomes (gpu_node's template).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # The root volume the image keeps: gp3 at its baseline (3000 IOPS, 125 MiB/s), encrypted
  # with alias/aws/ebs (locals.pkr.hcl). The image's snapshot is this volume's, with its key:
  # no encrypt_boot, which would copy the image once more to encrypt it with the same key
  # (https://developer.hashicorp.com/packer/integrations/hashicorp/amazon/latest/components/builder/ebs).
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_gib
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    kms_key_id            = local.ebs_kms_key
    delete_on_termination = true
  }

  tags = merge(local.image_tags, {
    SourceAMI     = "{{ .SourceAMI }}"
    SourceAMIName = "{{ .SourceAMIName }}"
  })
  snapshot_tags = local.image_tags
  # The build instance and its volume carry Project too: teardown and the budget killer see them.
  run_tags = {
    Project = var.project_tag
    Role    = "bake"
    Name    = "${local.ami_name}-build"
  }
  run_volume_tags = {
    Project = var.project_tag
    Role    = "bake"
  }
}

# The local bake: a container running sshd (started by bake_ami.yml), reached over SSH with
# a key held by ssh-agent. Same provisioning, no GPU; bake_ami.yml commits the container and
# registers an image record with the same tags in the stand-in.
source "null" "local" {
  ssh_host       = var.local_ssh_host
  ssh_port       = var.local_ssh_port
  ssh_username   = "root"
  ssh_agent_auth = true
  ssh_timeout    = "2m"
}
