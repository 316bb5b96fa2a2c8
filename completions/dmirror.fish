# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dmirror_global_optspecs
    string join \n h/help V/version
end

function __fish_dmirror_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dmirror_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dmirror_using_subcommand
    set -l cmd (__fish_dmirror_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dmirror -n "__fish_dmirror_needs_command" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_needs_command" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "probe" -d 'Probe every mirror at the registry level and rank the working ones'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "apply" -d 'Probe, then write the best mirrors into dockerd\'s daemon.json, make dockerd take them, verify, and roll back if it does not (or into containerd\'s hosts.toml or podman\'s registries.conf: --target)'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "pull" -d 'Pull an image over several mirrors at once, verify every byte, and load it into Docker or write it as an OCI layout or docker-archive'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "list" -d 'Show the mirror list that `probe` would use, without probing'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "history" -d 'Show what past probes found for each mirror'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "schedule" -d 'Install or remove the nightly job (systemd timer or cron) that re-ranks the mirrors and applies the best'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "serve" -d 'Run a local, read-only registry mirror that answers every pull from the ranked mirrors: tags resolved by upstream or their majority, every byte verified, the next mirror tried within the request. `serve install` makes it a systemd service'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "cache" -d 'See what the cache of `pull` and `serve` holds (images, blobs, unfinished downloads) and prune it'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "man" -d 'Print the man page (roff), generated from this command line'
complete -c dmirror -n "__fish_dmirror_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s i -l image -d 'Image whose manifest and largest layer are fetched from every mirror. `apply --target containerd|podman` takes one per registry (repeat the flag); registries given none use a small well-known image of theirs' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s p -l platform -d 'Platform to pick from a multi-platform image, as os/arch[/variant]. Defaults to this machine\'s' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s t -l timeout -d 'Time allowed for each mirror\'s health check (/v2/, token, manifest, first blob bytes)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -l budget -d 'Total time spent measuring throughput, shared fairly among healthy mirrors' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -l textfile -d 'Also write the results as Prometheus metrics to PATH, atomically (for node_exporter\'s textfile collector)' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -l proxy -d 'How to reach the mirrors: `engine` (the Docker engine\'s own proxy, as its /info reports it; direct when it has none or no engine answers), `env` (the shell\'s http_proxy/https_proxy/no_proxy), `none` (direct), or a proxy URL' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -l certs-dir -d 'Docker\'s per-host TLS directory: DIR/<host[:port]>/*.crt are extra CAs, *.cert with *.key a client certificate. [default: /etc/docker/certs.d, or ~/.config/docker/certs.d for rootless Docker]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -l no-history -d 'Neither use nor record the probe history: rank on this run alone'
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand probe" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s i -l image -d 'Image whose manifest and largest layer are fetched from every mirror. `apply --target containerd|podman` takes one per registry (repeat the flag); registries given none use a small well-known image of theirs' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s p -l platform -d 'Platform to pick from a multi-platform image, as os/arch[/variant]. Defaults to this machine\'s' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s t -l timeout -d 'Time allowed for each mirror\'s health check (/v2/, token, manifest, first blob bytes)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l budget -d 'Total time spent measuring throughput, shared fairly among healthy mirrors' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l textfile -d 'Also write the results as Prometheus metrics to PATH, atomically (for node_exporter\'s textfile collector)' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l proxy -d 'How to reach the mirrors: `engine` (the Docker engine\'s own proxy, as its /info reports it; direct when it has none or no engine answers), `env` (the shell\'s http_proxy/https_proxy/no_proxy), `none` (direct), or a proxy URL' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l certs-dir -d 'Docker\'s per-host TLS directory: DIR/<host[:port]>/*.crt are extra CAs, *.cert with *.key a client certificate. [default: /etc/docker/certs.d, or ~/.config/docker/certs.d for rootless Docker]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l target -d 'What to configure: dockerd\'s daemon.json (Docker Hub mirrors only), containerd\'s hosts.toml files, or registries.conf for podman, skopeo, buildah and CRI-O (both: every registry the mirror list serves)' -r -f -a "docker\t'dockerd: `registry-mirrors` in daemon.json, reloaded and verified'
containerd\t'containerd (Kubernetes nodes, nerdctl): <hosts-dir>/<registry>/hosts.toml'
podman\t'podman, skopeo, buildah, CRI-O: containers-registries.conf'"
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l hosts-dir -d 'containerd\'s registry configuration directory (--target containerd): dmirror writes DIR/<registry>/hosts.toml. [default: /etc/containerd/certs.d]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l registries-conf -d 'The registries.conf file to write (--target podman). [default: /etc/containers/registries.conf.d/50-dmirror.conf, or for rootless podman ~/.config/containers/registries.conf.d/50-dmirror.conf]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s r -l registry -d 'Configure only this registry (repeatable; --target containerd|podman). Default: every registry an enabled mirror serves. With --via, any registry, and for containerd `_default`: every registry without its own hosts directory' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s n -l top -d 'How many of the best working mirrors to write (per registry)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l daemon-json -d 'dockerd\'s configuration file (created if absent; --target docker). [default: /etc/docker/daemon.json, or ~/.config/docker/daemon.json for a rootless engine]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l dockerd-pidfile -d 'dockerd\'s pidfile, for the reload signal when systemd does not manage it' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l verify-timeout -d 'How long to wait for the engine to report the new list before rolling back' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l margin -d 'Keep the configured list when the best list is no more than PERCENT better (measurement noise): nothing written, dockerd not reloaded' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l via -d 'Point the runtime at a `dmirror serve` at URL instead of probing: dockerd gets URL as its only mirror; containerd and podman one host per registry (containerd\'s ns, podman\'s path prefix), upstream kept as the fallback. containerd gives up connecting to it after 200ms, so a server that is down costs a pull nothing' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l no-history -d 'Neither use nor record the probe history: rank on this run alone'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l reload -d 'Make dockerd re-read its configuration (SIGHUP; running containers keep running). The default'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l restart -d 'Restart dockerd instead (containers without live-restore stop)'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l dry-run -d 'Show the change to the configuration and change nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -l no-check -d 'With --via: write the files without first checking that a registry answers at URL (a node set-up that runs before its server starts; containerd and podman use upstream meanwhile)'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand apply" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s p -l platform -d 'Platform to pick from a multi-platform image, as os/arch[/variant]. Defaults to this machine\'s' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s o -l output -d 'Where the image goes: docker (load into the local engine), oci:DIR (an OCI image layout) or docker-archive:FILE (a file docker load reads)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s t -l timeout -d 'Time allowed for each mirror\'s health check' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s c -l connections -d 'Connections per mirror' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -l proxy -d 'How to reach the mirrors: `engine` (the Docker engine\'s own proxy, as its /info reports it; direct when it has none or no engine answers), `env` (the shell\'s http_proxy/https_proxy/no_proxy), `none` (direct), or a proxy URL' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -l certs-dir -d 'Docker\'s per-host TLS directory: DIR/<host[:port]>/*.crt are extra CAs, *.cert with *.key a client certificate. [default: /etc/docker/certs.d, or ~/.config/docker/certs.d for rootless Docker]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand pull" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand list" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand list" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand list" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand list" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s r -l registry -d 'Show the history of the mirrors of this registry' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand history" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and not __fish_seen_subcommand_from install remove help" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and not __fish_seen_subcommand_from install remove help" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and not __fish_seen_subcommand_from install remove help" -f -a "install" -d 'Install the nightly job: a systemd service and timer, or with --cron a /etc/cron.d entry, running `dmirror apply --reload`'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and not __fish_seen_subcommand_from install remove help" -f -a "remove" -d 'Remove the nightly job, whichever kind is installed'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and not __fish_seen_subcommand_from install remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l at -d 'Local time of day to run at, HH:MM (systemd adds up to 30 minutes of random delay, cron a fixed per-machine one)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l binary -d 'The dmirror binary the job runs. Default: this one, unless it lives in a build or temporary directory (install it first: cargo install --locked --path . --root /usr/local)' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l unit-dir -d 'Where systemd units go. [run as a user: ~/.config/systemd/user, driven with systemctl --user]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l cron-dir -d 'Where the cron entry goes' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l cron -d 'A /etc/cron.d entry instead of a systemd timer'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -l dry-run -d 'Print what would be installed and change nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l unit-dir -d 'Where systemd units go. [run as a user: ~/.config/systemd/user, driven with systemctl --user]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l cron-dir -d 'Where the cron entry goes' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print what would be removed and change nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install the nightly job: a systemd service and timer, or with --cron a /etc/cron.d entry, running `dmirror apply --reload`'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove the nightly job, whichever kind is installed'
complete -c dmirror -n "__fish_dmirror_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s l -l listen -d 'Address to listen on. Loopback unless you name another address' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s m -l mirrors -d 'Use only the mirrors in FILE (repeatable; later files override earlier entries of the same name). Replaces the built-in and user lists' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l cache-dir -d 'The blob cache (shared with dmirror pull). [default: the user\'s cache directory, e.g. ~/.cache/dmirror]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l max-cache -d 'Keep the cache under SIZE (e.g. 20G, 500M), least recently used blobs removed first. Default: no limit' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l reprobe -d 'Probe the mirrors again this often (`0` probes only at start)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s i -l image -d 'Image to probe a registry\'s mirrors with (one per registry; the others use a small well-known image of theirs)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s p -l platform -d 'Platform the probe picks from a multi-platform image. Defaults to this machine\'s' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s t -l timeout -d 'Time allowed for each mirror\'s health check, and for one source\'s answer to a manifest request' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l first-byte -d 'Time allowed for a source\'s first byte of a blob, and for any gap in its transfer, before the next source takes over' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l budget -d 'Total time the probe spends measuring throughput' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l allow -d 'Answer only clients from this network (e.g. 10.0.0.0/8) or address; repeat for more. This machine is always answered; others get 403. Default: everyone who reaches --listen' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l tls-cert -d 'Serve HTTPS with this certificate (PEM, chain after it), so other machines\' engines trust the server without insecure-registries' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l tls-key -d 'The certificate\'s private key (PEM)' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l proxy -d 'How to reach the mirrors: `engine` (the Docker engine\'s own proxy, as its /info reports it; direct when it has none or no engine answers), `env` (the shell\'s http_proxy/https_proxy/no_proxy), `none` (direct), or a proxy URL' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l certs-dir -d 'Docker\'s per-host TLS directory: DIR/<host[:port]>/*.crt are extra CAs, *.cert with *.key a client certificate. [default: /etc/docker/certs.d, or ~/.config/docker/certs.d for rootless Docker]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -l no-history -d 'Neither use nor record the probe history'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -f -a "install" -d 'Install `dmirror serve` as a systemd service (its own user, its own state and cache directories, sandboxed), started before docker and containerd'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -f -a "remove" -d 'Stop and remove the service'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and not __fish_seen_subcommand_from install remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -s l -l listen -d 'Address the service listens on' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -l binary -d 'The dmirror binary the service runs (default: this one, unless it lives in a build or temporary directory)' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -l unit-dir -d 'Where systemd units go' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -l dry-run -d 'Print the unit and change nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from remove" -l unit-dir -d 'Where systemd units go' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from remove" -l dry-run -d 'Print what would be removed and change nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install `dmirror serve` as a systemd service (its own user, its own state and cache directories, sandboxed), started before docker and containerd'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Stop and remove the service'
complete -c dmirror -n "__fish_dmirror_using_subcommand serve; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -f -a "list" -d 'The cached images, named by the tags pull and serve resolved, with their platforms, size and last use (--blobs: every blob)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -f -a "size" -d 'How much the cache holds (blobs, unfinished downloads) and the free space left on its disk'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -f -a "prune" -d 'Remove what has not been used for a while (--unused-for), the least recently used beyond a size (--keep), or everything (--all). Downloads under way are left alone'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and not __fish_seen_subcommand_from list size prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -l cache-dir -d 'The cache directory. [default: the user\'s cache directory, e.g. ~/.cache/dmirror; the serve service (serve install) keeps its cache in /var/cache/dmirror]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -s b -l blobs -d 'List every blob (digest, size, last use, the images using it) instead of the images'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from size" -l cache-dir -d 'The cache directory. [default: the user\'s cache directory, e.g. ~/.cache/dmirror; the serve service (serve install) keeps its cache in /var/cache/dmirror]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from size" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from size" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from size" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from size" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -l cache-dir -d 'The cache directory. [default: the user\'s cache directory, e.g. ~/.cache/dmirror; the serve service (serve install) keeps its cache in /var/cache/dmirror]' -r -F
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s k -l keep -d 'Remove the least recently used blobs until the cache holds at most SIZE (e.g. 20G, 500M)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s u -l unused-for -d 'Remove what has not been used for DURATION (e.g. 30d, 2weeks)' -r
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s f -l format -d 'Output format: table, plain (key=value lines), json, or prometheus where it applies. Default: a table on a terminal, plain lines (journald, cron, pipes) otherwise' -r -f -a "table\t'A table for people'
plain\t'One key=value line per mirror, for logs'
json\t'JSON for programs'
prometheus\t'Prometheus text format'"
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s a -l all -d 'Remove everything (downloads under way excepted)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -l dry-run -d 'Show what would be removed and remove nothing'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s j -l json -d 'Print JSON (same as --format json)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "list" -d 'The cached images, named by the tags pull and serve resolved, with their platforms, size and last use (--blobs: every blob)'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "size" -d 'How much the cache holds (blobs, unfinished downloads) and the free space left on its disk'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove what has not been used for a while (--unused-for), the least recently used beyond a size (--keep), or everything (--all). Downloads under way are left alone'
complete -c dmirror -n "__fish_dmirror_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand completions" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand completions" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand man" -s h -l help -d 'Print help'
complete -c dmirror -n "__fish_dmirror_using_subcommand man" -s V -l version -d 'Print version'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "probe" -d 'Probe every mirror at the registry level and rank the working ones'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "apply" -d 'Probe, then write the best mirrors into dockerd\'s daemon.json, make dockerd take them, verify, and roll back if it does not (or into containerd\'s hosts.toml or podman\'s registries.conf: --target)'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "pull" -d 'Pull an image over several mirrors at once, verify every byte, and load it into Docker or write it as an OCI layout or docker-archive'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "list" -d 'Show the mirror list that `probe` would use, without probing'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "history" -d 'Show what past probes found for each mirror'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "schedule" -d 'Install or remove the nightly job (systemd timer or cron) that re-ranks the mirrors and applies the best'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "serve" -d 'Run a local, read-only registry mirror that answers every pull from the ranked mirrors: tags resolved by upstream or their majority, every byte verified, the next mirror tried within the request. `serve install` makes it a systemd service'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "cache" -d 'See what the cache of `pull` and `serve` holds (images, blobs, unfinished downloads) and prune it'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "man" -d 'Print the man page (roff), generated from this command line'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and not __fish_seen_subcommand_from probe apply pull list history schedule serve cache completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "install" -d 'Install the nightly job: a systemd service and timer, or with --cron a /etc/cron.d entry, running `dmirror apply --reload`'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "remove" -d 'Remove the nightly job, whichever kind is installed'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from serve" -f -a "install" -d 'Install `dmirror serve` as a systemd service (its own user, its own state and cache directories, sandboxed), started before docker and containerd'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from serve" -f -a "remove" -d 'Stop and remove the service'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "list" -d 'The cached images, named by the tags pull and serve resolved, with their platforms, size and last use (--blobs: every blob)'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "size" -d 'How much the cache holds (blobs, unfinished downloads) and the free space left on its disk'
complete -c dmirror -n "__fish_dmirror_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "prune" -d 'Remove what has not been used for a while (--unused-for), the least recently used beyond a size (--keep), or everything (--all). Downloads under way are left alone'
