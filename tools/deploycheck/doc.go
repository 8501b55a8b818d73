// Package deploycheck holds the tests of hexride's deployment files:
// the systemd units and Kubernetes manifests in infra/deploy and the
// Terraform in terraform/. It is its own module so that k8s.io/api and
// hashicorp/hcl stay out of the service module; CI runs
// `cd tools/deploycheck && go test ./...`.
package deploycheck

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// roles are the processes an operator runs, each its own unit,
// Kubernetes workload and Terraform service.
var roles = []string{"trip", "matching", "driver", "rider", "console"}
