#!/bin/sh
# Writes project.aws.json for `apex deploy --env aws`: the committed project.json plus the
# fetchers' execution role and the region, both read from the terraform outputs of
# infrastructure/ (run it after `terraform apply`, from anywhere in the repository).
# project.json itself carries no role (it is account-specific), so a plain `apex deploy` stops
# with "Role: zero value" instead of deploying without one. Needs terraform and jq.
#   sh scripts/apex-project.sh && apex deploy --env aws
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
role="$(terraform -chdir="$root/infrastructure" output -raw fetcher_role_arn)"
region="$(terraform -chdir="$root/infrastructure" output -raw region)"
case "$role" in
  arn:aws*:iam::[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]:role/?*) ;;
  *) echo "apex-project: terraform output fetcher_role_arn is not an IAM role ARN: '$role' (terraform apply first)" >&2; exit 1 ;;
esac
case "$region" in
  [a-z][a-z]-*-[0-9]*) ;;
  *) echo "apex-project: terraform output region is not a region: '$region'" >&2; exit 1 ;;
esac
jq --arg role "$role" --arg region "$region" '. + {role: $role, region: $region}' \
  "$root/project.json" > "$root/project.aws.json.tmp"
mv "$root/project.aws.json.tmp" "$root/project.aws.json"
echo "apex-project: wrote project.aws.json (role $role, region $region); next: apex deploy --env aws"
