# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/coder/coder" {
  version     = "2.20.0"
  constraints = "~> 2.20"
  hashes = [
    "h1:Z0O6eUpRQnzEKk923h9dw89vF9XkjY9pZ6JQ69doK/E=",
  ]
}

provider "registry.terraform.io/kreuzwerker/docker" {
  version     = "4.6.0"
  constraints = "~> 4.6"
  hashes = [
    "h1:RjZ7LQ5A4KXAk53UQefQI0QQ1WfR2X/+UgWQGvDzgO4=",
  ]
}
