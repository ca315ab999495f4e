#!/bin/bash
# Entrypoint of a lab LambdaStack host (test/lab/lshosts.sh): first-boot configuration of the
# Debian services for a container (loopback listeners, no systemd), then the services named in
# /etc/lifeboat/enabled (`systemctl enable` writes it), then sshd in the foreground.
# Runs under docker-init (--init), which reaps the daemons' children.
set -u
PATH=/lifeboat:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /run/sshd /etc/lifeboat /var/log/lifeboat
touch /etc/lifeboat/enabled

if [ ! -f /etc/lifeboat/configured ]; then
  # sshd: keys only, root by key, the lab's key file
  cat > /etc/ssh/sshd_config.d/lifeboat.conf <<'CONF'
PasswordAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys /etc/lifeboat/authorized_keys
CONF
  # service users reached by key (postgres: pg_dumpall as the OS user); a locked password is refused under UsePAM no
  usermod -p '*' postgres
  ln -sf /lifeboat/systemctl /usr/local/sbin/systemctl
  # RabbitMQ: one fixed node name (so a mnesia directory moves between hosts), loopback only,
  # the management plugin on 127.0.0.1:15672
  echo 'NODENAME=rabbit@localhost' > /etc/rabbitmq/rabbitmq-env.conf
  printf '%s\n' 'listeners.tcp.local = 127.0.0.1:5672' 'management.tcp.ip = 127.0.0.1' 'management.tcp.port = 15672' 'loopback_users = none' > /etc/rabbitmq/rabbitmq.conf
  echo '[rabbitmq_management].' > /etc/rabbitmq/enabled_plugins
  chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins 2>/dev/null || true
  # PostgreSQL: the cluster debootstrap made (15/main), also listening on the lab network for
  # replication; trust inside the lab network (the hosts are the lab's own containers)
  if [ -d /etc/postgresql/15/main ]; then
    sed -i "s/^#\?listen_addresses.*/listen_addresses = '*'/" /etc/postgresql/15/main/postgresql.conf
    grep -q 'lifeboat-lab' /etc/postgresql/15/main/pg_hba.conf || \
      printf '%s\n' '# lifeboat-lab: the lab network' 'host all all samenet trust' 'host replication all samenet trust' >> /etc/postgresql/15/main/pg_hba.conf
  fi
  # Prometheus and Alertmanager as LambdaStack runs them: data in /var/lib/prometheus, admin API on
  mkdir -p /var/lib/prometheus /var/lib/alertmanager /var/lib/grafana /etc/ssl/haproxy /etc/elasticsearch /etc/kibana /var/lib/elasticsearch /var/lib/elasticsearch-snapshots
  chown -R prometheus:prometheus /var/lib/prometheus /var/lib/alertmanager
  touch /etc/lifeboat/configured
fi

# services start in the background, sshd answers at once (like a booting host)
(while read -r unit; do
  [ -n "$unit" ] && systemctl start "$unit"
done < /etc/lifeboat/enabled) >>/var/log/lifeboat/boot.log 2>&1 </dev/null &
exec /usr/sbin/sshd -D -e
