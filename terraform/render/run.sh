# coder-slots: the module's start script (rendered by slotprov). Terraform
# puts the settings above, base64-encoded. It installs slotagent when the
# image has none on its PATH (checking the archive's SHA-256), puts it on
# the PATH of Coder's sessions, and starts it as a service. A problem is one
# line in this script's log, and nothing is left half started.
set -u

fail() {
	printf 'coder-slots: %s\n' "$*" >&2
	exit 1
}

decode() {
	printf '%s' "$1" | base64 -d 2>/dev/null || fail "cannot decode the module's settings: base64 (coreutils) is missing"
}

install_url=$(decode "$SLOTS_INSTALL_URL")
install_sha256=$(decode "$SLOTS_INSTALL_SHA256")
instance=$(decode "$SLOTS_INSTANCE")

data_dir=${SLOTAGENT_DATA_DIR:-$HOME/data/slotagent}
bin_dir=$data_dir/bin
# The data dir holds the apps' env and database credentials: the user's alone.
if ! (umask 077 && mkdir -p "$bin_dir") 2>/dev/null || ! [ -w "$bin_dir" ]; then
	fail "the data dir $data_dir is not writable by $(id -un): set the module's data_dir to a folder of the workspace user on a persistent volume"
fi

# shown is a URL without its user info and query, which may hold secrets.
shown() {
	printf '%s' "$1" | sed -e 's#//[^/@]*@#//#' -e 's#[?].*##'
}

# fetch URL FILE downloads with curl or wget; on failure it prints the
# tool's last line.
fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 2 --connect-timeout 10 -o "$2" "$1" 2>"$tmp/fetch.err" && return 0
	elif command -v wget >/dev/null 2>&1; then
		wget -q -T 10 -O "$2" "$1" 2>"$tmp/fetch.err" && return 0
	else
		echo "neither curl nor wget is installed" >"$tmp/fetch.err"
	fi
	tail -n 1 "$tmp/fetch.err" | tr -d '\r'
	return 1
}

install() {
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) fail "slotagent has no release for this CPU ($(uname -m)); put slotagent on the image's PATH" ;;
	esac
	url=$(printf '%s' "$install_url" | sed "s/{arch}/$arch/g")
	installed="$url $install_sha256"
	if [ -x "$bin_dir/slotagent" ] && [ "$(cat "$bin_dir/.installed" 2>/dev/null)" = "$installed" ]; then
		return 0
	fi
	tmp=$(mktemp -d "$bin_dir/.install.XXXXXX") || fail "cannot make a temporary folder in $bin_dir"
	trap 'rm -rf "$tmp"' EXIT
	if ! why=$(fetch "$url" "$tmp/slotagent.tar.gz"); then
		fail "cannot download slotagent from $(shown "$url"): $why"
	fi
	want=$install_sha256
	if [ -z "$want" ]; then
		sums=${url%/*}/SHA256SUMS
		if ! why=$(fetch "$sums" "$tmp/SHA256SUMS"); then
			fail "cannot download the checksums $(shown "$sums"): $why (or set install_sha256)"
		fi
		want=$(awk -v f="${url##*/}" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
		[ -n "$want" ] || fail "$(shown "$sums") has no checksum for ${url##*/}"
	fi
	got=$(sha256sum "$tmp/slotagent.tar.gz" | cut -d ' ' -f 1)
	if [ "$got" != "$want" ]; then
		fail "checksum mismatch for $(shown "$url"): sha256 $got, want $want; slotagent was not installed or started"
	fi
	tar -xzf "$tmp/slotagent.tar.gz" -C "$tmp" slotagent 2>/dev/null || fail "$(shown "$url") is not a slotagent release archive (no slotagent in it)"
	chmod 755 "$tmp/slotagent"
	mv -f "$tmp/slotagent" "$bin_dir/slotagent" || fail "cannot install slotagent into $bin_dir"
	printf '%s\n' "$installed" >"$bin_dir/.installed"
	rm -rf "$tmp"
	trap - EXIT
	echo "coder-slots: installed slotagent from $(shown "$url") into $bin_dir"
}

# The image's own slotagent wins; a link this script made does not count.
slotagent=$(command -v slotagent 2>/dev/null || true)
case $(readlink "$slotagent" 2>/dev/null || true) in
"$bin_dir/slotagent") slotagent= ;;
esac
if [ -z "$slotagent" ]; then
	install
	slotagent=$bin_dir/slotagent
	# On the PATH of Coder's sessions: the script bin dir is on the agent's
	# PATH; ~/.local/bin is on the PATH a login shell's ~/.profile makes.
	if [ -n "${CODER_SCRIPT_BIN_DIR:-}" ]; then
		ln -sfn "$slotagent" "$CODER_SCRIPT_BIN_DIR/slotagent"
	fi
	mkdir -p "$HOME/.local/bin" 2>/dev/null &&
		{ [ ! -e "$HOME/.local/bin/slotagent" ] || [ -L "$HOME/.local/bin/slotagent" ]; } &&
		ln -sfn "$slotagent" "$HOME/.local/bin/slotagent"
fi

SLOTAGENT_INSTANCE=$instance exec "$slotagent" run --detach --data-dir "$data_dir"
