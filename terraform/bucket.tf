# Plugin artifacts: plugins/<receiver>/<sha256>.wasm as registered, and
# precompiled/<engine hash>/<sha256>.cwasm. Content-addressed, so objects are
# never overwritten with different bytes; versioning keeps deletions
# recoverable.

resource "aws_s3_bucket" "plugins" {
  # checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket per account; every write goes through `prism plugin register`, whose registry entries record who and when.
  # checkov:skip=CKV_AWS_144:Artifacts are rebuilt from source by CI and re-registered; cross-region replication would double the environment for no recovery gain.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to new artifacts: the registry table, not the bucket, announces a plugin.
  bucket = "${local.name}-plugins-${local.account_id}"

  # Test environments are destroyed with their artifacts; production keeps
  # them unless emptied on purpose (scripts/cleanup-env does that).
  force_destroy = false
}

resource "aws_s3_bucket_versioning" "plugins" {
  bucket = aws_s3_bucket.plugins.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "plugins" {
  bucket = aws_s3_bucket.plugins.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "plugins" {
  bucket                  = aws_s3_bucket.plugins.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "plugins" {
  bucket = aws_s3_bucket.plugins.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "plugins" {
  bucket = aws_s3_bucket.plugins.id

  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 90
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Claim checks outlive what refers to them: a retry lane waits up to
  # MAX_LANE_ATTEMPTS ticks, a DLQ keeps a message 14 days at most.
  rule {
    id     = "claim-checks"
    status = "Enabled"
    filter {
      prefix = "claims/"
    }

    expiration {
      days = 30
    }
  }
}
