package config

import "fmt"

// checkModule refuses the settings a module cannot honour: the workspace's
// image, container and resources are the template's, not the module's.
func (c *Config) checkModule() error {
	switch {
	case c.Image.Mode == ImageBuild:
		return fmt.Errorf("image.mode: %q is for the targets %s and %s; a module runs in the template's own image (slotagent installs itself there)", ImageBuild, TargetDocker, TargetKubernetes)
	case c.Resources.CPUs != "" || c.Resources.MemoryMB != 0:
		return fmt.Errorf("resources: the module does not own the workspace's container; set its limits in the template")
	case c.Docker.NetworkMode != "":
		return fmt.Errorf("docker.network_mode: %q is for target %s only; the module does not own the workspace's container", c.Docker.NetworkMode, TargetDocker)
	case c.Docker.StopGraceSeconds != defaultOf("docker.stop_grace_seconds"):
		return fmt.Errorf("docker.stop_grace_seconds: the module does not own the workspace's container; set destroy_grace_seconds on the template's docker_container")
	}
	return nil
}
