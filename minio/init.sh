#!/bin/sh
# One-shot MinIO set-up for sluice (run by the minio-init service of docker-compose.yml): the
# bucket, a policy limited to it, and the user sluice writes with.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing local/sluice
mc admin policy create local sluice-lake /minio/policy.json
mc admin user add local "$SLUICE_S3_ACCESS_KEY" "$SLUICE_S3_SECRET_KEY"
mc admin policy attach local sluice-lake --user "$SLUICE_S3_ACCESS_KEY" || true
echo "minio ready: bucket sluice, user $SLUICE_S3_ACCESS_KEY"
