"""scripts/cleanup-env against moto: a half-built environment is found by
its tags and names and deleted completely, in a dry run nothing is deleted,
and a neighbouring environment whose names look alike is left alone.

Run by tests/all/cleanup.rs (so by `cargo test`) with PRISM_TEST_AWS_ENDPOINT
pointing at moto server.
"""

import io
import json
import os
import subprocess
import sys
import unittest
import uuid
import zipfile

import boto3

ENDPOINT = os.environ["PRISM_TEST_AWS_ENDPOINT"]
REGION = "us-east-1"
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "cleanup-env")


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name=REGION)


def tags(env):
    return {"env": env, "owner": "test", "managed-by": "terraform", "app": "prism"}


def half_built(env, tagged=True, with_lambda=True):
    """What a Terraform apply that failed midway leaves: some of everything."""
    name = f"prism-{env}"
    t = tags(env) if tagged else {}
    ddb, sqs, s3, iam, logs, lam, kms = (client(s) for s in ("dynamodb", "sqs", "s3", "iam", "logs", "lambda", "kms"))
    made = []
    for table, stream in ((f"{name}-product-model", True), (f"{name}-registry", False), (f"{name}-shadow-brands", False)):
        kw = {}
        if stream:
            kw["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        if t:
            kw["Tags"] = [{"Key": k, "Value": v} for k, v in t.items()]
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], **kw)
        made.append(("table", table))
    for q in (f"{name}-unreadable", f"{name}-rcv-website", f"{name}-rcv-website-dlq"):
        sqs.create_queue(QueueName=q, tags=t)
        made.append(("queue", q))
    bucket = f"{name}-plugins-123456789012"
    s3.create_bucket(Bucket=bucket)
    if t:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in t.items()]})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="plugins/a.wasm", Body=b"v1")
    s3.put_object(Bucket=bucket, Key="plugins/a.wasm", Body=b"v2")
    s3.delete_object(Bucket=bucket, Key="plugins/a.wasm")
    made.append(("bucket", bucket))
    if not with_lambda:
        return made
    role = iam.create_role(RoleName=f"{name}-dispatcher", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }), Tags=[{"Key": k, "Value": v} for k, v in t.items()])
    iam.put_role_policy(RoleName=f"{name}-dispatcher", PolicyName="dispatcher",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}))
    made.append(("role", f"{name}-dispatcher"))
    logs.create_log_group(logGroupName=f"/aws/lambda/{name}-dispatcher", tags=t)
    made.append(("log group", f"/aws/lambda/{name}-dispatcher"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    fn = lam.create_function(FunctionName=f"{name}-dispatcher", Runtime="provided.al2023", Role=role["Role"]["Arn"],
                             Handler="bootstrap", Code={"ZipFile": buf.getvalue()}, Tags=t)
    made.append(("function", f"{name}-dispatcher"))
    stream = ddb.describe_table(TableName=f"{name}-product-model")["Table"]["LatestStreamArn"]
    lam.create_event_source_mapping(FunctionName=fn["FunctionArn"], EventSourceArn=stream,
                                    StartingPosition="TRIM_HORIZON", FunctionResponseTypes=["ReportBatchItemFailures"])
    events = client("events")
    rule = events.put_rule(Name=f"{name}-tick", ScheduleExpression="rate(1 minute)",
                           Tags=[{"Key": k, "Value": v} for k, v in t.items()])
    events.put_targets(Rule=f"{name}-tick", Targets=[{"Id": "dispatcher", "Arn": fn["FunctionArn"],
                                                      "Input": json.dumps({"prism": "tick"})}])
    made.append(("rule", f"{name}-tick"))
    assert rule["RuleArn"]
    client("apigatewayv2").create_api(Name=f"{name}-read", ProtocolType="HTTP", Tags=t)
    made.append(("api", f"{name}-read"))
    logs.create_log_group(logGroupName=f"/aws/apigateway/{name}-read", tags=t)
    made.append(("log group", f"/aws/apigateway/{name}-read"))
    key = kms.create_key(Description=name)["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=key)
    made.append(("alias", f"alias/{name}"))
    return made


def exists(kind, ident):
    try:
        if kind == "table":
            client("dynamodb").describe_table(TableName=ident)
            return True
        if kind == "queue":
            return any(u.endswith("/" + ident) for u in client("sqs").list_queues(QueueNamePrefix=ident).get("QueueUrls", []))
        if kind == "bucket":
            return any(b["Name"] == ident for b in client("s3").list_buckets()["Buckets"])
        if kind == "role":
            client("iam").get_role(RoleName=ident)
            return True
        if kind == "log group":
            return any(g["logGroupName"] == ident for g in client("logs").describe_log_groups(logGroupNamePrefix=ident)["logGroups"])
        if kind == "function":
            client("lambda").get_function(FunctionName=ident)
            return True
        if kind == "rule":
            return any(r["Name"] == ident for r in client("events").list_rules(NamePrefix=ident)["Rules"])
        if kind == "api":
            return any(a["Name"] == ident for a in client("apigatewayv2").get_apis().get("Items", []))
        if kind == "alias":
            pages = client("kms").get_paginator("list_aliases").paginate()
            return any(a["AliasName"] == ident for page in pages for a in page["Aliases"])
    except client("dynamodb").exceptions.ResourceNotFoundException:
        return False
    except client("iam").exceptions.NoSuchEntityException:
        return False
    except client("lambda").exceptions.ResourceNotFoundException:
        return False
    raise ValueError(kind)


def cleanup(env, *extra):
    return subprocess.run([sys.executable, SCRIPT, "--env", env, "--endpoint-url", ENDPOINT, "--region", REGION, *extra],
                          capture_output=True, text=True, timeout=120)


class CleanupEnv(unittest.TestCase):
    def test_dry_run_lists_and_yes_deletes_only_this_environment(self):
        run = uuid.uuid4().hex[:6]
        env, neighbour = f"ci{run}", f"ci{run}-2"
        mine = half_built(env)
        # Looks alike (prism-ci…-2-registry starts with prism-ci…-), tagged as its own env.
        theirs = half_built(neighbour, with_lambda=False)

        dry = cleanup(env)
        self.assertEqual(dry.returncode, 0, dry.stderr)
        for kind, ident in mine:
            self.assertIn(ident, dry.stdout)
            self.assertTrue(exists(kind, ident), f"dry run deleted {kind} {ident}")
        self.assertIn("dry run: nothing deleted", dry.stdout)
        self.assertIn("event source mapping", dry.stdout)
        for _, ident in theirs:
            self.assertNotIn(ident, dry.stdout)

        done = cleanup(env, "--yes")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        for kind, ident in mine:
            self.assertFalse(exists(kind, ident), f"{kind} {ident} survived:\n{done.stdout}")
        for kind, ident in theirs:
            self.assertTrue(exists(kind, ident), f"the neighbour's {kind} {ident} was deleted")
        self.assertEqual(client("lambda").list_event_source_mappings(
            FunctionName=f"arn:aws:lambda:{REGION}:123456789012:function:prism-{env}-dispatcher")["EventSourceMappings"], [])

        again = cleanup(env, "--yes")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("nothing found", again.stdout)
        cleanup(neighbour, "--yes")

    def test_untagged_leftovers_are_found_by_their_names(self):
        env = f"ci{uuid.uuid4().hex[:6]}"
        mine = half_built(env, tagged=False, with_lambda=False)
        # Untagged and not one of prism's names: not ours to delete.
        stranger = f"prism-{env}-someone-elses-table"
        client("dynamodb").create_table(TableName=stranger, BillingMode="PAY_PER_REQUEST",
                                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                                        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
        done = cleanup(env, "--yes")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        for kind, ident in mine:
            self.assertFalse(exists(kind, ident), f"{kind} {ident} survived")
        self.assertTrue(exists("table", stranger))


if __name__ == "__main__":
    unittest.main(verbosity=2)
