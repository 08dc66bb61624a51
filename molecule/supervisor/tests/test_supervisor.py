"""The node's supervisord as the supervisor role leaves an instance: a systemd unit, one program."""

from __future__ import annotations

UNIT = "tlops-supervisor"
CONFIG = "/etc/tlops/supervisord.conf"
INCLUDE_DIR = "/etc/tlops/supervisor.d"
CTL = f"/usr/bin/supervisorctl -c {CONFIG}"
RUNTIME_DIRECTORIES = ("/run/tlops", "/run/tlops/nginx")  # supervisor_runtime_directories
# The probe program of converge.yml: its user, environment file and value (shell
# metacharacters, which the launcher must pass through as they are).
PROGRAM = "probe"
PROGRAM_USER = "tlprobe"
PROGRAM_COMMAND = ["/bin/sh", "-c", "while :; do sleep 30; done"]
ENV_FILE = "/etc/tlops/probe.env"
ENV_NAME = "TL_PROBE_SECRET"
ENV_VALUE = "molecule-probe-7c41 it's $HOME; `x`"
ENV_MARK = "molecule-probe-7c41"  # the part of it that is in no other string here


def main_pid(host) -> int:
    result = host.run(f"systemctl show --property=MainPID --value {UNIT}")
    assert result.rc == 0, result.stderr
    return int(result.stdout.strip())


def argv(host, pid: int) -> list[str]:
    return host.file(f"/proc/{pid}/cmdline").content.decode().rstrip("\0").split("\0")


def program_pid(host) -> int:
    result = host.run(f"{CTL} pid {PROGRAM}")
    assert result.rc == 0, result.stderr or result.stdout
    text = result.stdout.strip()
    assert text.isdigit() and int(text) > 0, f"{PROGRAM} has no pid: {text!r}"
    return int(text)


def program_state(host) -> str | None:
    """The program's state, or None while supervisord does not answer (just after a start)."""
    parts = host.run(f"{CTL} status {PROGRAM}").stdout.split()
    return parts[1] if len(parts) >= 2 and parts[0] == PROGRAM else None


def wait_running(host, eventually) -> None:
    assert eventually(lambda: program_state(host) == "RUNNING", within_s=30), program_state(host)


def test_the_unit_is_enabled_and_active(host):
    unit = host.service(UNIT)
    assert unit.is_enabled
    assert unit.is_running


def test_the_unit_runs_supervisord_with_the_nodes_configuration(host):
    command = argv(host, main_pid(host))
    assert any(part.endswith("/supervisord") for part in command), command
    assert "--nodaemon" in command, command
    assert command[command.index("-c") + 1] == CONFIG, command


def test_the_distributions_supervisord_is_off(host):
    distro = host.service("supervisor")
    assert not distro.is_enabled
    assert not distro.is_running


def test_supervisorctl_shows_the_program_running(supervisor):
    assert supervisor().get(PROGRAM) == "RUNNING"


def test_the_program_runs_as_its_user_under_the_units_supervisord(host):
    pid = program_pid(host)
    status = host.file(f"/proc/{pid}/status").content_string
    ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    assert ppid == main_pid(host)
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == PROGRAM_USER


def test_its_environment_file_is_readable_by_its_user_only(host):
    env = host.file(ENV_FILE)
    assert env.mode == 0o600
    assert env.user == PROGRAM_USER
    assert f"{ENV_NAME}=" in env.content_string
    # Read as another unprivileged user: refused (the program's own user can read it).
    assert host.run(f"runuser -u nobody -- cat {ENV_FILE}").rc != 0
    assert host.run(f"runuser -u {PROGRAM_USER} -- cat {ENV_FILE}").rc == 0


def test_its_value_is_neither_in_supervisords_configuration_nor_on_a_command_line(host):
    # The program file names the environment file, not what is in it.
    program_file = host.file(f"{INCLUDE_DIR}/{PROGRAM}.conf").content_string
    assert ENV_FILE in program_file
    grep = host.run(f"grep -rlF -- {ENV_MARK} {CONFIG} {INCLUDE_DIR}")
    assert grep.rc == 1, f"the value is in {grep.stdout.split()}"
    processes = host.run("ps -eww -o args=")
    assert processes.rc == 0, processes.stderr
    # The launcher execs the program: its command line is the program's own argv.
    assert argv(host, program_pid(host)) == PROGRAM_COMMAND
    assert " ".join(PROGRAM_COMMAND) in processes.stdout.splitlines()
    assert ENV_MARK not in processes.stdout


def test_its_value_is_in_the_running_processs_environment(host):
    # Read as the program's user: the container's root lacks CAP_SYS_PTRACE, which reading
    # another user's environ needs.
    result = host.run(f"runuser -u {PROGRAM_USER} -- cat /proc/{program_pid(host)}/environ")
    assert result.rc == 0, result.stderr
    assert f"{ENV_NAME}={ENV_VALUE}" in result.stdout_bytes.decode().split("\0")


def test_a_restart_of_the_unit_runs_the_program_again(host, eventually):
    before = program_pid(host)
    assert host.run(f"systemctl restart {UNIT}").rc == 0
    wait_running(host, eventually)
    assert program_pid(host) != before, f"{PROGRAM} kept pid {before} across a restart"
    for path in RUNTIME_DIRECTORIES:
        assert host.file(path).is_directory, f"{path} missing after a restart"


def test_a_stop_removes_the_runtime_directories_and_a_start_makes_them_again(host, eventually):
    # What a reboot does to /run, on a smaller scale: the unit, not the role, makes them.
    assert host.run(f"systemctl stop {UNIT}").rc == 0
    try:
        for path in RUNTIME_DIRECTORIES:
            assert not host.file(path).exists, f"{path} outlived the unit"
    finally:
        assert host.run(f"systemctl start {UNIT}").rc == 0
    wait_running(host, eventually)
    for path in RUNTIME_DIRECTORIES:
        assert host.file(path).is_directory, f"{path} missing after a start"
    assert host.service(UNIT).is_running
