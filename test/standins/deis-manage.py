#!/bin/sh
# STAND-IN for Deis v1's controller `./manage.py` (Django), for the lifeboat lab only: it is NOT
# Django and re-saves nothing. The drill copies it to /app/manage.py in a stand-in
# "deis-controller" container, so deis-restore's last runbook step (`./manage.py shell` fed the
# re-save snippet) runs for real; each call appends what it received to /app/manage.py.calls:
# the arguments, the working directory, ETCD (the runbook's export ETCD=…) and stdin.
{
  echo "argv: $*"
  echo "cwd: $(pwd)"
  echo "ETCD: ${ETCD:-}"
  echo "stdin:"
  cat
  echo "end"
} >> /app/manage.py.calls
echo "re-saved (stand-in)"
