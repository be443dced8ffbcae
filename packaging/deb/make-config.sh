#!/bin/sh
# Writes packaging/deb/appliance.toml, the configuration the .deb installs: the shipped
# appliance.toml with server.data_dir and plugins.dir set. Run it after changing
# appliance.toml (the test ops::the_packaged_configuration_is_the_shipped_one_… checks).
set -eu
cd "$(dirname "$0")/../.."
{
    cat <<'HEADER'
## Installed by the vmauto package as /etc/vmauto/appliance.toml, a dpkg conffile: your
## changes survive upgrades. The service runs `vmauto --config <this file> serve` as the
## vmauto user; /etc/default/vmauto may add VMAUTO_* settings.
## (This is appliance.toml with server.data_dir and plugins.dir set; a test keeps the two
## in step.)
##
HEADER
    sed -e 's|^# data_dir = "/var/lib/vmauto"$|data_dir = "/var/lib/vmauto"|' \
        -e 's|^# dir = ""$|dir = "/var/lib/vmauto/plugins"|' appliance.toml
} > packaging/deb/appliance.toml.new
mv packaging/deb/appliance.toml.new packaging/deb/appliance.toml
