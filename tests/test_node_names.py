"""Virtual node names resolve inside local jobs, and each node's processes see its name as the hostname.

The end-to-end tests run a 2-node job on the 4-node cluster of the reference
slurm.conf: a task on node2 reaches a server a task on node1 listens on, by
the name ``node1``. One test runs srun as an ordinary user (a user namespace
of their own); they skip where the kernel refuses the namespaces.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap

import pytest

from conftest import REF_CONF, ROOT, job_allocation
from sflow.conf import default_cluster, load_file
from sflow.errors import SlurmError
from sflow.exec import node_names
from sflow.records import AllocatedNode
from sflow.queue.paths import hosts_path

CLUSTER = load_file(REF_CONF)

# Rank 0 serves on its own node's name; rank 1 finds node1 by name and talks to it.
TALK = textwrap.dedent("""\
    import os, socket, sys, time
    port, me = int(sys.argv[1]), socket.gethostname()
    if os.environ["SLURM_PROCID"] == "0":
        with socket.create_server((me, port)) as server:
            conn, _ = server.accept()
            print(f"{me} ({os.environ['SLURMD_NODENAME']}) heard: {conn.recv(100).decode()}", flush=True)
    else:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection(("node1", port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.sendall(f"hello from {me}".encode())
        conn.close()
        print(f"{me} reached node1 at {socket.gethostbyname('node1')}", flush=True)
    """)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _namespaces_refused(tmp_path) -> str | None:
    home = tmp_path / "probe"
    home.mkdir()
    return node_names.prepare(CLUSTER, hosts_path(str(home))).problem


@pytest.fixture
def namespaces(tmp_path):
    problem = _namespaces_refused(tmp_path)
    if problem:
        pytest.skip(f"this kernel refuses the namespaces: {problem}")


# ------------------------------------------------------------------ the hosts file


def test_each_node_has_a_loopback_address_of_its_own():
    assert [node_names.node_address(i) for i in (0, 1, 253, 254, 255)] == [
        "127.100.0.1", "127.100.0.2", "127.100.0.254", "127.100.1.1", "127.100.1.2"]
    addresses = {node_names.node_address(i) for i in range(70000)}
    assert len(addresses) == 70000
    assert not {a for a in addresses if a.endswith((".0", ".255")) or not a.startswith("127.")}


def test_hosts_file_puts_the_nodes_first_and_takes_their_names_out_of_the_machines_lines():
    machine = "127.0.0.1 localhost\n# a comment\n10.0.0.5 node2 gateway\n127.0.0.1 node1\n::1 ip6-localhost\n"
    assert node_names.hosts_text(CLUSTER, machine).splitlines()[1:] == [
        "127.100.0.1\tnode1", "127.100.0.2\tnode2", "127.100.0.3\tnode3", "127.100.0.4\tnode4",
        "127.0.0.1 localhost", "# a comment", "10.0.0.5\tgateway", "::1 ip6-localhost"]


def test_a_node_hostname_other_than_its_name_is_an_alias(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("NodeName=a1 NodeHostname=host-a1 CPUs=1\nNodeName=a2 CPUs=1\n"
                    "PartitionName=p Nodes=a[1-2] Default=YES\n"
                    "NodeName=gpu1 CPUs=8\nPartitionName=cloud Nodes=gpu1 Backend=mithril\n")
    assert node_names.hosts_text(load_file(str(conf)), "").splitlines()[1:] == [
        "127.100.0.1\ta1 host-a1", "127.100.0.2\ta2"]  # a Mithril node is another machine


def test_the_hosts_file_is_rewritten_when_the_cluster_changes(tmp_path):
    machine = tmp_path / "etc-hosts"
    machine.write_text("127.0.0.1 localhost\n")
    target = str(tmp_path / "hosts")
    node_names.write_hosts(CLUSTER, target, str(machine))
    first = os.stat(target)
    node_names.write_hosts(CLUSTER, target, str(machine))
    assert os.stat(target).st_ino == first.st_ino  # unchanged: left alone
    conf = tmp_path / "slurm.conf"
    conf.write_text("NodeName=n[1-2] CPUs=1\n")
    node_names.write_hosts(load_file(str(conf)), target, str(machine))
    assert open(target).read().splitlines()[1:] == ["127.100.0.1\tn1", "127.100.0.2\tn2", "127.0.0.1 localhost"]
    assert os.stat(target).st_ino != first.st_ino  # replaced: a running job keeps the file it mounted


def test_the_machine_as_one_node_needs_nothing(tmp_path):
    assert not node_names.enabled(default_cluster())
    assert node_names.prepare(default_cluster(), hosts_path(str(tmp_path))) == node_names.NodeNames()
    assert not os.path.exists(hosts_path(str(tmp_path)))


def test_slurm_conf_can_turn_it_off(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("NodeNameResolution=NO\nNodeName=node[1-2] CPUs=1\n")
    cluster = load_file(str(conf))
    assert node_names.enabled(CLUSTER) and not node_names.enabled(cluster)
    assert node_names.prepare(cluster, hosts_path(str(tmp_path))) == node_names.NodeNames()
    assert not os.path.exists(hosts_path(str(tmp_path)))
    conf.write_text("NodeNameResolution=sometimes\nNodeName=node[1-2] CPUs=1\n")
    with pytest.raises(SlurmError, match='"NodeNameResolution" value "sometimes" is not YES or NO'):
        load_file(str(conf))


# ------------------------------------------------------------------ where the kernel refuses


def test_a_refusal_is_found_once_and_said_in_words(tmp_path):
    problem = node_names._probe(str(tmp_path / "missing-hosts"))
    assert problem.startswith("the kernel refused the namespaces that provide them (")
    assert problem.endswith("(mount --bind /etc/hosts: No such file or directory)") or "(unshare: " in problem \
        or "(mount --make-rprivate /: " in problem


def test_a_job_whose_node_names_cannot_resolve_runs_and_says_so_once(tmp_path):
    from sflow.exec.batch import launch_batch
    from sflow.exec.env import JobContext

    ctx = JobContext(job_id=7, job_name="t", user="u", uid=os.getuid(), gid=os.getgid(), partition="debug",
                     account="u", qos="normal", cluster_name="c", submit_dir=str(tmp_path), submit_host="h",
                     work_dir=str(tmp_path), nodes=[AllocatedNode("node1", 1), AllocatedNode("node2", 1)],
                     tasks_per_node=[1, 1], ntasks=2)
    refused = node_names.NodeNames("", "the kernel refused the namespaces that provide them "
                                       "(unshare: Operation not permitted)")
    step = launch_batch(ctx, "#!/bin/sh\necho ran\n", [], {"PATH": "/usr/bin:/bin"}, home=str(tmp_path / "home"),
                        stdout_pattern=str(tmp_path / "out"), node_names=refused)
    assert step.popen.wait() == 0
    assert (tmp_path / "out").read_text() == (
        "sflow: warning: node names do not resolve in this job, and hostname is this machine's: the kernel "
        "refused the namespaces that provide them (unshare: Operation not permitted); "
        'see "Multi-node rendezvous" in docs/cluster.md\nran\n')


def test_a_task_the_kernel_will_not_put_on_its_node_still_runs(tmp_path):
    done = node_names.popen_on_node(["/bin/sh", "-c", "echo ran"], "node1", str(tmp_path / "missing-hosts"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = done.communicate(timeout=60)
    assert (done.returncode, out) == (0, b"ran\n")
    said = err.decode()
    assert said.startswith("sflow: warning: node names do not resolve in this job, and hostname is this "
                           "machine's: the kernel refused the namespaces that provide them (")
    assert said.endswith('; see "Multi-node rendezvous" in docs/cluster.md\n') and said.count("\n") == 1


# ------------------------------------------------------------------ in a job


def test_a_task_on_node2_reaches_a_server_on_node1_by_name(cluster, namespaces):
    port = _free_port()
    (open(os.path.join(cluster.work, "talk.py"), "w")).write(TALK)
    (open(os.path.join(cluster.work, "job.sh"), "w")).write(textwrap.dedent(f"""\
        #!/bin/sh
        #SBATCH -N 2 --ntasks-per-node=1 -o out-%j
        echo "batch on $(hostname)"
        getent hosts node1 node2
        srun -l python3 talk.py {port} | sort
        srun -l hostname | sort
        squeue -h -j "$SLURM_JOB_ID" -o %T
        """))
    done = cluster.run("sbatch", "--wait", "--parsable", "job.sh", timeout=180)
    assert done.returncode == 0, done.stderr
    text = open(os.path.join(cluster.work, f"out-{done.stdout.strip()}")).read()
    assert text.splitlines() == [
        "batch on node1",
        "127.100.0.1     node1", "127.100.0.2     node2",
        "0: node1 (node1) heard: hello from node2", "1: node2 reached node1 at 127.100.0.1",
        "0: node1", "1: node2",
        "RUNNING",  # the controller's socket still answers from inside the namespaces
    ], text


def test_a_changed_slurm_conf_changes_the_names_new_jobs_see(cluster, namespaces, tmp_path):
    conf = tmp_path / "own.conf"
    conf.write_text("NodeName=n[1-2] CPUs=1\n")
    cluster.env["SFLOW_CONF"] = str(conf)
    command = "getent hosts n2 n3; hostname"
    first = cluster.run("sbatch", "--wait", "-o", "one.out", "--wrap", command)
    conf.write_text("# one more node\nNodeName=n[1-3] CPUs=1\n")
    second = cluster.run("sbatch", "--wait", "-o", "two.out", "-w", "n3", "--wrap", command)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert open(os.path.join(cluster.work, "one.out")).read() == "127.100.0.2     n2\nn1\n"
    assert open(os.path.join(cluster.work, "two.out")).read() == "127.100.0.2     n2\n127.100.0.3     n3\nn3\n"


def test_an_ordinary_user_gets_node_names_in_a_user_namespace(tmp_path, other_user):
    shared = tempfile.mkdtemp(prefix="sfn", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        _, home = job_allocation(tmp_path, 31, nodes=[AllocatedNode("node1", 1), AllocatedNode("node2", 1)],
                                   tasks_per_node=[1, 1], ntasks=2)
        job_home = os.path.join(shared, "home")
        shutil.copytree(home, job_home)
        node_names.write_hosts(CLUSTER, hosts_path(job_home))
        context = os.path.join(job_home, "jobs", "31", "context.json")
        with open(context) as handle:
            text = handle.read().replace(str(tmp_path), shared)
        with open(context, "w") as handle:
            handle.write(text.replace('"hosts_file": ""', f'"hosts_file": "{hosts_path(job_home)}"'))
        with open(os.path.join(shared, "talk.py"), "w") as handle:
            handle.write(TALK)
        for path in (shared, *(os.path.join(d, n) for d, ds, fs in os.walk(shared) for n in ds + fs)):
            os.chown(path, other_user.uid, other_user.gid)
        srun = [other_user.python, "-c", "from sflow.cli.shims import srun; srun()"]
        run_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT, "SFLOW_HOME": job_home, "SLURM_JOB_ID": "31"}
        if other_user.popen([other_user.python, "-c", "import sflow.cli.shims"], env=run_env,
                            stderr=subprocess.DEVNULL).wait(timeout=60) != 0:
            pytest.skip(f"user {other_user.name} cannot read this checkout")
        talk = other_user.popen([*srun, "-l", other_user.python, "talk.py", str(_free_port())], cwd=shared,
                                env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = talk.communicate(timeout=120)
        if "do not resolve" in err:
            pytest.skip(f"this kernel refuses an ordinary user the namespaces: {err.strip()}")
        assert talk.returncode == 0, err
        assert sorted(out.splitlines()) == ["0: node1 (node1) heard: hello from node2",
                                            "1: node2 reached node1 at 127.100.0.1"]
        who = other_user.popen([*srun, "-l", "sh", "-c", "echo $(hostname) $(id -u) $(id -g)"], cwd=shared,
                               env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = who.communicate(timeout=120)
        assert sorted(out.splitlines()) == [f"0: node1 {other_user.uid} {other_user.gid}",
                                            f"1: node2 {other_user.uid} {other_user.gid}"], err
    finally:
        shutil.rmtree(shared, ignore_errors=True)
