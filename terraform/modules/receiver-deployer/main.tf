# The role a receiver team's pipeline assumes to ship its plugin. It may
# upload components and register, enable, disable and roll back its own
# receiver, and nothing else:
# - registry items only under its receiver's partition key
#   (dynamodb:LeadingKeys), and no Scan or DeleteItem (removal stays with ops);
# - its own receiver's component prefix only (plugins/<receiver>/), so it
#   can never replace or shadow another receiver's component; never
#   precompiled/, which holds native code that
#   dispatchers run, so a team can never place any (a dispatcher loads a
#   .cwasm only when its sha256 is recorded by a trusted writer, and a team
#   cannot write the bytes such a record would vouch for);
# - no SQS, no Lambda, no other table.
# The actions are the ones `prism plugin register|enable|disable|rollback`
# call (host/aws/src/registry.rs TEAM_ACTIONS, checked by the hcl tests).

locals {
  name = "${var.prefix}-${var.env}-rcv-${var.receiver}-deploy"
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.trusted_principal_arns
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = local.name
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "OwnRegistryEntryOnly"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [var.registry_table_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = [var.receiver]
    }
  }

  # Its own components: uploaded by register, read back by the release
  # gate (`register --diff-changes`).
  statement {
    sid       = "UploadComponents"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.plugin_bucket_arn}/plugins/${var.receiver}/*"]
  }

  statement {
    sid       = "UseTheEnvironmentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = local.name
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}
